#!/usr/bin/env python3
"""Webhook ingestion benchmark (issue 8): how many signed Mercado Pago notifications per second the
real app stores with their job, and how fast it answers at fixed rates.

It starts `uvicorn kiosk.app:app` (1 and 2 processes) against a scratch database, sends correctly
signed notifications with distinct ids, one per distinct provider order that has a payment intent
(so each is stored and its job deferred; `--unknown-share` adds notifications for orders no intent
knows, stored the same way: their job matches them by reference, docs/payments.md), from an
open-loop load generator: requests are due at fixed times whatever the answers, and latency counts
from the due time (no coordinated omission). No worker runs: jobs pile up, so this measures the API
path only.

For each run it checks the database: every accepted notification has exactly one inbox row and
exactly one `todo` job with `queueing_lock = mp-order-<order>`
(the row's `job_id`), and nothing else was stored; a 503 left nothing behind.

Loopback only; every step is bounded in count and time, and the script stops by itself.
Usage (from a checkout, after scripts/bootstrap):

    .venv/bin/python bench/webhook_ingest.py                  # both process counts, full ramp
    .venv/bin/python bench/webhook_ingest.py --processes 1 --ramp 500,1000 --step-seconds 5

The database is KIOSK_BENCH_DATABASE_URL or DATABASE_URL (a server: a scratch database is created
on it and dropped), else an embedded PostgreSQL in .kiosk/bench-pgdata. docs/benchmarks.md has the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bench import scratch  # noqa: E402
from kiosk.webhooks import signature  # noqa: E402
from tests.support import free_port  # noqa: E402

SECRET = "bench-webhook-secret"
TASK = "payments.process_notification"
HOST = "127.0.0.1"
REQUEST_TIMEOUT = 10.0


# -- load generator (runs in client processes) -----------------------------------------------------


def build_request(port: int, notification_id: str, data_id: str, ts: int) -> bytes:
    """One signed notification as raw HTTP/1.1 bytes, as Mercado Pago sends it."""
    request_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "id": notification_id,
            "type": "order",
            "action": "order.processed",
            "api_version": "v1",
            "application_id": "2836150016842090",
            "date_created": "2026-11-25T12:01:07Z",
            "live_mode": False,
            "user_id": "1243567810",
            "data": {"id": data_id, "status": "processed"},
        }
    ).encode()
    head = (
        f"POST /webhooks/mercadopago?data.id={data_id}&type=order HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"x-signature: {signature.header(SECRET, data_id, request_id, ts)}\r\n"
        f"x-request-id: {request_id}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _load(
    port: int, requests: list[bytes], rate: float, connections: int, start: float
) -> tuple[list[int], list[float], list[bytes]]:
    """Send `requests` at `rate` per second from wall-clock `start`; status, latency, state each."""
    count = len(requests)
    statuses = [0] * count
    latencies = [0.0] * count
    states = [b""] * count
    due: asyncio.Queue[int | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    # Wall clock -> loop clock, so every client process shares one schedule.
    t0 = loop.time() + (start - time.time())

    async def open_conn():
        return await asyncio.open_connection(HOST, port)

    async def connection_worker(stream) -> None:
        reader, writer = stream
        while True:
            index = await due.get()
            if index is None:
                break
            planned = t0 + index / rate
            try:
                if writer is None:
                    reader, writer = await open_conn()
                writer.write(requests[index])
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await asyncio.wait_for(reader.readexactly(length), REQUEST_TIMEOUT)
                statuses[index] = int(head[9:12])
                states[index] = body[:40]
                if b"connection: close" in head.lower():
                    writer.close()
                    writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                statuses[index] = -1  # no answer: the outcome is unknown
                if writer is not None:
                    writer.close()
                writer = None
            latencies[index] = loop.time() - planned
        if writer is not None:
            writer.close()

    streams = await asyncio.gather(*(open_conn() for _ in range(connections)))
    workers = [asyncio.create_task(connection_worker(stream)) for stream in streams]
    for index in range(count):
        delay = t0 + index / rate - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        due.put_nowait(index)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return statuses, latencies, states


def client_main(
    k: int,
    port: int,
    items: list[tuple[str, str]],
    rate: float,
    connections: int,
    start: float,
    result_queue,
) -> None:
    """Entry point of one client process: build the signed requests, send them, report back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ts = int(time.time())
    requests = [build_request(port, nid, data_id, ts) for nid, data_id in items]
    cpu0 = time.process_time()
    statuses, latencies, states = asyncio.run(_load(port, requests, rate, connections, start))
    result_queue.put((k, statuses, latencies, states, time.process_time() - cpu0))


# -- processes and the database --------------------------------------------------------------------


@contextmanager
def database(keep: bool):
    """A migrated scratch database; yields (its URL, postmaster pid or None)."""
    from kiosk import embedded

    server = os.environ.get("KIOSK_BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    with ExitStack() as stack:
        postmaster = None
        if not server:
            pgdata = PROJECT_DIR / ".kiosk" / "bench-pgdata"
            server = stack.enter_context(embedded.embedded_server(pgdata))
            postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        name = f"kiosk_bench_{os.getpid()}"
        url = embedded.create_database(server, name, replace=True)
        os.environ.update(
            DATABASE_URL=url,
            KIOSK_ADMIN_TOKEN="bench-admin-token-0123456789",
            MP_ACCESS_TOKEN="bench-access-token",
            MP_WEBHOOK_SECRET=SECRET,
        )
        from kiosk import migrations
        from kiosk.settings import get_settings

        get_settings.cache_clear()
        migrations.upgrade(url)
        try:
            yield url, postmaster
        finally:
            if not keep:
                embedded.drop_database(server, name)


def seed(url: str, count: int) -> list[str]:
    """`count` pending orders, each with a payment intent on its own provider order."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            INSERT INTO orders (id, total_cents, expires_at)
            SELECT md5('bench-order-' || n)::uuid, 250, now() + interval '1 day'
            FROM generate_series(1, %(n)s) AS n""",
            {"n": count},
        )
        conn.execute(
            """
            INSERT INTO payment_intents (id, order_id, terminal_id, provider_order_id,
                                         idempotency_key, external_reference, amount_cents, status)
            SELECT md5('bench-intent-' || n)::uuid, md5('bench-order-' || n)::uuid,
                   'TERMINAL_' || n, 'ORDBENCH' || n, 'bench-key-' || n, 'bench-ref-' || n, 250,
                   'at_terminal'
            FROM generate_series(1, %(n)s) AS n""",
            {"n": count},
        )
        conn.execute("ANALYZE")
    return [f"ORDBENCH{n}" for n in range(1, count + 1)]


def reset(url: str) -> None:
    """Empty the inbox and the jobs between runs, so every run starts from the same tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE webhook_inbox, procrastinate_jobs, procrastinate_events CASCADE")
        conn.execute("VACUUM ANALYZE webhook_inbox, procrastinate_jobs, procrastinate_events")


def xact_commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


class Api:
    """`uvicorn kiosk.app:app --workers N` on a free loopback port."""

    def __init__(self, url: str, processes: int, extra: list[str], log_path: Path):
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "kiosk.app:app",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(processes),
            *extra,
        ]
        self.log = log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT_DIR,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise SystemExit(f"uvicorn exited; see {log_path}")
            try:
                # Every process must be up: ask a few times (connections spread over processes).
                if all(
                    httpx.get(f"http://{HOST}:{self.port}/readyz", timeout=2).status_code == 200
                    for _ in range(processes * 4)
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"uvicorn not ready after 60 s; see {log_path}")

    def pids(self) -> list[int]:
        return [self.popen.pid, *children(self.popen.pid)]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    result = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[pid] = (int(fields[11]) + int(fields[12])) / tick
    return result


# -- one run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    rate: float
    sent: int
    ok: int
    errors: dict[str, int]
    p50: float
    p95: float
    p99: float
    max: float
    achieved: float
    lag: float  # seconds between the last request's due time and its answer
    commits: int
    cpu: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def sustained(self) -> bool:
        # Kept pace: no error, and the backlog at the end of the run is under half a second.
        return not self.errors and not self.problems and self.lag <= 0.5


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def others_busy(pids: list[int], seconds: float = 1.0) -> float:
    """Cores kept busy by processes other than `pids` (other people's work) over `seconds`."""
    ours0, busy0 = cpu_seconds(pids), scratch.cpu_times()
    time.sleep(seconds)
    ours1, busy1 = cpu_seconds(pids), scratch.cpu_times()
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * os.cpu_count()
    ours = sum(ours1.get(p, 0) - v for p, v in ours0.items()) / seconds
    return max(0.0, busy - ours)


def wait_quiet(pids: list[int], below: float, patience: float) -> float:
    """Wait (at most `patience` seconds) until others use less than `below` cores; their use."""
    deadline = time.monotonic() + patience
    while True:
        others = others_busy(pids)
        if others < below or time.monotonic() > deadline:
            return others


QUIET = {"below": 0.3, "patience": 0.0, "retries": 0}


def measured(
    api: Api,
    url: str,
    postmaster: int | None,
    orders: list[str],
    rate: float,
    seconds: float,
    clients: int,
    connections: int,
    unknown_share: float,
    tag: str,
    fixed: bool,
) -> Run:
    """`run`, again (at most `retries` times) when other processes took CPU during it and it did
    not pass (ramp) or at all (fixed rates): the least disturbed attempt is kept."""
    best: Run | None = None
    for attempt in range(1 + QUIET["retries"]):
        r = run(
            api,
            url,
            postmaster,
            orders,
            rate,
            seconds,
            clients,
            connections,
            unknown_share,
            f"{tag}-{attempt}",
        )
        if r.problems:
            return r
        if best is None or (r.sustained, -r.cpu["others"]) > (best.sustained, -best.cpu["others"]):
            best = r
        if r.cpu["others"] <= QUIET["below"] or (r.sustained and not fixed):
            break
        if attempt < QUIET["retries"]:
            print(
                f"  (others used {r.cpu['others']:.2f} cores during {rate:.0f}/s: again)",
                flush=True,
            )
    assert best is not None
    return best


def run(
    api: Api,
    url: str,
    postmaster: int | None,
    orders: list[str],
    rate: float,
    seconds: float,
    clients: int,
    connections: int,
    unknown_share: float,
    tag: str,
) -> Run:
    reset(url)
    pg_all = [postmaster, *children(postmaster)] if postmaster else []
    others_before = wait_quiet(api.pids() + pg_all, QUIET["below"], QUIET["patience"])
    count = int(rate * seconds)
    if count > len(orders):
        raise SystemExit(f"{count} notifications need more seeded orders (--orders)")
    unknown_every = round(1 / unknown_share) if unknown_share > 0 else 0
    items, known = [], []
    for n in range(count):
        is_unknown = unknown_every and n % unknown_every == unknown_every - 1
        data_id = f"ORDUNKNOWN{tag}{n}" if is_unknown else orders[n]
        items.append((f"{tag}-{n}", data_id))
        known.append(not is_unknown)
    # Client k sends every clients-th request, so together they keep one schedule.
    start = time.time() + 1.5
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = []
    for k in range(clients):
        part = items[k::clients]
        proc = multiprocessing.Process(
            target=client_main,
            args=(
                k,
                api.port,
                part,
                rate / clients,
                max(1, connections // clients),
                start + k / rate,
                queue,
            ),
        )
        proc.start()
        procs.append(proc)
    pg_pids = [postmaster, *children(postmaster)] if postmaster else []
    api_pids = api.pids()
    commits0 = xact_commits(url)
    time.sleep(max(0.0, start - time.time()))
    api_cpu0, pg_cpu0, busy0 = cpu_seconds(api_pids), cpu_seconds(pg_pids), scratch.cpu_times()
    results = [queue.get(timeout=seconds + 4 * REQUEST_TIMEOUT + 30) for _ in procs]
    elapsed = time.time() - start
    api_cpu1, pg_cpu1, busy1 = cpu_seconds(api_pids), cpu_seconds(pg_pids), scratch.cpu_times()
    for proc in procs:
        proc.join(10)
    # Results come back in completion order; match each to its slice by length and order.
    statuses = [0] * count
    latencies = [0.0] * count
    states = [b""] * count
    client_cpu = 0.0
    for k, st, lat, sts, cpu in results:
        statuses[k::clients], latencies[k::clients], states[k::clients] = st, lat, sts
        client_cpu += cpu
    commits = xact_commits(url) - commits0

    errors: dict[str, int] = {}
    for n, status in enumerate(statuses):
        want = b'"received"'  # orders no intent knows too: their job matches them by reference
        if status != 200:
            key = "no answer" if status == -1 else str(status)
            errors[key] = errors.get(key, 0) + 1
        elif want not in states[n]:
            errors["wrong state"] = errors.get("wrong state", 0) + 1
    ok_lat = sorted(latencies[n] for n in range(count) if statuses[n] == 200)
    finished = max(latencies[n] + n / rate for n in range(count))
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * os.cpu_count()
    cpu = {
        "api": sum(api_cpu1.get(p, 0) - v for p, v in api_cpu0.items()) / elapsed,
        "postgres": sum(pg_cpu1.get(p, 0) - v for p, v in pg_cpu0.items()) / elapsed,
        "client": client_cpu / elapsed,
        "machine": busy,
        "before": others_before,
    }
    cpu["others"] = max(0.0, busy - cpu["api"] - cpu["postgres"] - cpu["client"])
    result = Run(
        rate,
        count,
        len(ok_lat),
        errors,
        percentile(ok_lat, 0.5) * 1000,
        percentile(ok_lat, 0.95) * 1000,
        percentile(ok_lat, 0.99) * 1000,
        (ok_lat[-1] if ok_lat else float("nan")) * 1000,
        count / max(finished, 1e-9),
        finished - (count - 1) / rate,
        commits,
        cpu,
    )
    result.problems = verify(url, items, known, statuses)
    return result


def verify(
    url: str, items: list[tuple[str, str]], known: list[bool], statuses: list[int]
) -> list[str]:
    """Each accepted notification: one row and one todo job with its queueing lock (orders no
    intent knows too: their job reads them and matches their reference)."""
    problems: list[str] = []
    with psycopg.connect(url) as conn:
        inbox = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT notification_id, state, job_id, resource_id FROM webhook_inbox"
            )
        }
        jobs = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, queueing_lock, status, args->>'provider_order_id' "
                "FROM procrastinate_jobs WHERE task_name = %s",
                (TASK,),
            )
        }
        other_jobs = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name <> %s", (TASK,)
        ).fetchone()[0]
    expected_jobs = 0
    sent_ids = set()
    for n, (nid, data_id) in enumerate(items):
        sent_ids.add(nid)
        row = inbox.get(nid)
        if statuses[n] == 200:
            if row is None:
                problems.append(f"{nid}: answered 200 but no inbox row")
                continue
        elif statuses[n] != -1:  # a refusal (e.g. 503) must leave nothing behind
            if row is not None:
                problems.append(f"{nid}: answered {statuses[n]} but stored")
            continue
        elif row is None:
            continue  # no answer and not stored: the sender retries
        state, job_id, resource = row
        expected_jobs += 1
        job = jobs.get(job_id)
        if state != "received" or job is None:
            problems.append(
                f"{nid}: state {state}, job {job_id} ({'known' if known[n] else 'unknown'} order)"
            )
        elif job != (f"mp-order-{data_id}", "todo", data_id):
            problems.append(f"{nid}: job {job_id} is {job}")
    if set(inbox) - sent_ids:
        problems.append(f"{len(set(inbox) - sent_ids)} inbox rows nobody sent")
    if len(jobs) != expected_jobs or other_jobs:
        problems.append(
            f"{len(jobs)} jobs for {expected_jobs} stored notifications (+{other_jobs} others)"
        )
    return problems[:10]


# -- main ------------------------------------------------------------------------------------------


def show(label: str, r: Run) -> None:
    errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "none"
    check = "ok" if not r.problems else "FAILED: " + "; ".join(r.problems)
    print(
        f"  {label:>5} offered {r.rate:5.0f}/s  achieved {r.achieved:5.0f}/s  lag {r.lag:4.2f} s  "
        f"p50 {r.p50:6.1f}  p95 {r.p95:6.1f}  p99 {r.p99:7.1f}  max {r.max:7.1f} ms  "
        f"errors {errors}  commits/notification {r.commits / max(1, r.sent):.2f}  "
        f"cpu api {r.cpu['api']:.2f} pg {r.cpu['postgres']:.2f} client {r.cpu['client']:.2f} "
        f"others {r.cpu['others']:.2f} (before {r.cpu['before']:.2f})  "
        f"per notification: api {r.cpu['api'] / r.achieved * 1e6:.0f} us, "
        f"pg {r.cpu['postgres'] / r.achieved * 1e6:.0f} us  check {check}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2", help="uvicorn process counts (--workers)")
    parser.add_argument(
        "--ramp",
        default="500,750,1000,1250,1500,1750,2000,2500,3000",
        help="offered rates, per second, tried in turn until one is not sustained",
    )
    parser.add_argument("--fixed", default="200,500", help="rates for the latency figures")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--connections", type=int, default=128, help="keep-alive connections in all"
    )
    parser.add_argument(
        "--unknown-share",
        type=float,
        default=0.0,
        help="share of notifications for provider orders no intent knows (each gets its job too)",
    )
    parser.add_argument(
        "--uvicorn-args", default="", help="extra uvicorn options, e.g. '--http h11'"
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="stop stepping after this")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.3,
        help="before each run, wait until other processes use fewer cores than this",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="...but at most this many seconds (0: do not wait)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=0,
        help="run a step again when others took more than --quiet-below cores "
        "during it (fixed rates; ramp steps that failed); best one kept",
    )
    args = parser.parse_args()
    QUIET.update(below=args.quiet_below, patience=args.quiet_wait, retries=args.retries)

    ramp = [float(x) for x in args.ramp.split(",") if x]
    fixed = [float(x) for x in args.fixed.split(",") if x]
    deadline = time.monotonic() + args.max_minutes * 60
    need = int(max(ramp + fixed) * args.step_seconds) + 1
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    failed = False
    log_dir = PROJECT_DIR / ".kiosk" / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with database(args.keep_database) as (url, postmaster):
        orders = seed(url, need)
        print(f"database ready, {len(orders)} payment intents seeded", flush=True)
        for processes in [int(x) for x in args.processes.split(",") if x]:
            api = Api(
                url,
                processes,
                args.uvicorn_args.split(),
                log_dir / f"uvicorn-{processes}-{os.getpid()}.log",
            )
            print(f"uvicorn --workers {processes} {args.uvicorn_args}".rstrip(), flush=True)
            try:
                tag = f"w{processes}-{uuid.uuid4().hex[:6]}"
                # Warm-up: connections, pools, caches.
                run(
                    api,
                    url,
                    postmaster,
                    orders,
                    200,
                    2,
                    args.clients,
                    args.connections,
                    args.unknown_share,
                    tag + "-warm",
                )
                for rate in fixed:
                    r = measured(
                        api,
                        url,
                        postmaster,
                        orders,
                        rate,
                        args.step_seconds,
                        args.clients,
                        args.connections,
                        args.unknown_share,
                        f"{tag}-f{int(rate)}",
                        fixed=True,
                    )
                    show("fixed", r)
                    failed |= bool(r.problems)
                best = None
                for rate in ramp:
                    if time.monotonic() > deadline:
                        print("  time budget spent; stopping the ramp", flush=True)
                        break
                    r = measured(
                        api,
                        url,
                        postmaster,
                        orders,
                        rate,
                        args.step_seconds,
                        args.clients,
                        args.connections,
                        args.unknown_share,
                        f"{tag}-r{int(rate)}",
                        fixed=False,
                    )
                    show("ramp", r)
                    failed |= bool(r.problems)
                    if not r.sustained:
                        break
                    best = r
                print(
                    f"  highest sustained rate, {processes} process(es): "
                    f"{f'{best.rate:.0f}/s' if best else 'none of the ramp'}",
                    flush=True,
                )
            finally:
                api.stop()
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
