"""Drill: restart PostgreSQL while orders are paid; the kiosk recovers by itself, loses nothing.

    .venv/bin/python bench/drills/restart_postgres.py    # 1 outage of 5 s
    .venv/bin/python bench/drills/restart_postgres.py --orders 500 --duration 120 \
        --outages 3 --down 10

The drill's own embedded PostgreSQL (pgserver in a temporary folder, never a shared server) is
stopped with its pg_ctl (`--mode fast`: clients are disconnected; `immediate`: a crash) while
customers pay orders, kept down `--down` seconds and started again. Meanwhile a probe asks the API
for an order every 0.2 s: every answer while the database is down must be a 503 (never a 500, never
a hang), and the API must answer 2xx again without being restarted.

procrastinate 3.10 workers do not survive the outage: a worker's database calls fail (fetching a
job, its heartbeat, its LISTEN connection) and the process exits with an error. The drill runs
them under a supervisor that starts an exited worker again after 1 s, as Compose
(`restart: unless-stopped`) and Railway (`restartPolicyType: ALWAYS`) do; a new process that cannot
reach the database exits too, until it can. Jobs a dying worker held stay `doing` until the
stalled-job sweep puts them back. Notifications Mercado Pago could not deliver during the outage
(the simulator gives up after 3 quick tries) are sent again afterwards, as Mercado Pago retries
later. Exit status 1 when anything was lost or duplicated, or the API misbehaved.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from bench.drills import counts, harness  # noqa: E402
from bench.drills.counts import Report  # noqa: E402
from bench.drills.harness import Load, Stack, log  # noqa: E402
from tests.support.processes import until, wait_for  # noqa: E402

SLOW_ANSWER = (
    12.0  # seconds: an answer slower than this counts as a hang (KIOSK_DB_POOL_TIMEOUT + slack)
)


class Probe:
    """GET /orders/<unknown id> (with the admin token) every `every` seconds, each on its own thread
    so that a slow answer never delays the next question: 404 when the database answers, 503 when it
    does not."""

    def __init__(self, api_url: str, every: float = 0.2):
        self.url = f"{api_url}/orders/{uuid.uuid4()}"
        self.every = every
        self.answers: list[tuple[float, float, int | str]] = []  # (asked, answered, status)
        self.waiting: dict[int, float] = {}  # questions not answered yet: id -> asked
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=64)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _ask(self) -> None:
        asked = time.monotonic()
        key = threading.get_ident()
        with self.lock:
            self.waiting[key] = asked
        try:
            status: int | str = httpx.get(
                self.url, headers=harness.ADMIN_AUTH, timeout=60
            ).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        with self.lock:
            self.answers.append((asked, time.monotonic(), status))
            del self.waiting[key]

    def unanswered(self, before: float) -> list[float]:
        """When the questions asked before `before` and not answered yet were asked."""
        with self.lock:
            return [asked for asked in self.waiting.values() if asked < before]

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.pool.submit(self._ask)

    def overlapping(self, start: float, end: float) -> list[tuple[float, float, int | str]]:
        """Questions asked while the database was down, or answered after it went down."""
        return [a for a in self.answers if a[0] < end and a[1] > start]

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.pool.shutdown(wait=True)


def first_ok_after(probe: Probe, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for asked, answered, status in list(probe.answers):
            if asked >= since and status == 404:
                return answered
        time.sleep(0.05)
    return None


def main() -> int:
    parser = harness.parser(__doc__.split("\n")[0], orders=40, duration=60)
    parser.add_argument(
        "--outages", type=int, default=1, help="database outages, spread over the load"
    )
    parser.add_argument("--down", type=float, default=10.0, help="seconds the database stays down")
    parser.add_argument(
        "--mode", choices=["fast", "immediate"], default="fast", help="pg_ctl stop mode"
    )
    parser.add_argument(
        "--recover-timeout",
        type=float,
        default=60.0,
        help="seconds the API and the workers get to recover after each restart",
    )
    args = parser.parse_args()
    harness.seeded(args)
    report = Report("restart-postgres")
    with Stack(args, "pg") as stack:
        probe = Probe(stack.api.url)
        began = time.monotonic()
        load = Load(
            stack.api.url,
            stack.sim,
            orders=args.orders,
            duration=args.duration,
            customers=args.customers,
            rate=args.rate,
        )
        outages = []
        for i in range(args.outages):
            share = (i + 1) / (args.outages + 1)
            wait_for(
                lambda share=share: load.reached(share),
                timeout=args.duration + 60,
                interval=0.1,
                what="the outage's turn",
            )
            exits_before = sum(len(s.exits) for s in stack.supervisor.slots)
            stack.pg.stop(args.mode)
            stopped = time.monotonic()  # pg_ctl -w returned: the server is down
            log(f"PostgreSQL stopped ({args.mode}) with {len(load.sales)} orders in")
            time.sleep(args.down)
            restarted = time.monotonic()
            stack.pg.start()
            log("PostgreSQL started again")
            ok_at = first_ok_after(probe, restarted, args.recover_timeout)
            workers_back = until(
                lambda: (
                    len(stack.supervisor.running()) == args.workers
                    and all(
                        time.monotonic() - s.exits[-1][0] > 3 if s.exits else True
                        for s in stack.supervisor.slots
                    )
                ),
                args.recover_timeout,
            )
            # The last answers: every question asked while the database was down, or a hang.
            until(
                lambda since=restarted: not probe.unanswered(since),
                restarted + SLOW_ANSWER - time.monotonic(),
            )
            hanging = probe.unanswered(restarted)
            during = probe.overlapping(stopped, restarted)
            while_down = Counter(str(s) for _, answered, s in during if answered < restarted)
            after = Counter(str(s) for _, answered, s in during if answered >= restarted)
            slowest = max(
                [b - a for a, b, _ in during] + [time.monotonic() - a for a in hanging],
                default=0.0,
            )
            exits = sum(len(s.exits) for s in stack.supervisor.slots) - exits_before
            outages.append(
                {
                    "at": f"{stopped - began:.1f}s",
                    "down": f"{restarted - stopped:.1f}s",
                    "probe answers while down": dict(while_down),
                    "probe questions asked while down, answered after": dict(after),
                    "slowest probe answer": f"{slowest:.2f}s",
                    "API answers 2xx/404 again after": f"{ok_at - restarted:.2f}s"
                    if ok_at
                    else "never",
                    "worker exits": exits,
                    "workers running again": bool(workers_back),
                }
            )
            log(f"outage {i + 1}: {outages[-1]}")
            bad = {s: n for s, n in while_down.items() if s != "503"}
            bad.update({s: n for s, n in after.items() if s not in ("503", "404")})
            if bad:
                report.fail(
                    "problems",
                    f"outage {i + 1}: probe answers other than 503 (or 404 once "
                    f"the database was back): {bad}",
                )
            if args.down > SLOW_ANSWER and not while_down.get("503"):
                report.fail("problems", f"outage {i + 1}: no 503 while the database was down")
            if slowest > SLOW_ANSWER:
                report.fail("problems", f"outage {i + 1}: a probe answer took {slowest:.1f}s")
            if not workers_back:
                report.fail(
                    "problems",
                    f"outage {i + 1}: workers not running again after {args.recover_timeout}s",
                )
            if ok_at is None:
                report.fail(
                    "problems",
                    f"outage {i + 1}: the API did not recover in {args.recover_timeout}s",
                )
        load.join(args.duration + 180)
        load.stop()
        settled, redelivered = counts.settle_all(stack, load, args.settle_timeout)
        elapsed = time.monotonic() - began
        probe.close()

        exit_codes = Counter(
            harness.signal_name(code) for s in stack.supervisor.slots for _, code in s.exits
        )
        report.figures.update(counts.load_figures(stack, load, elapsed, redelivered))
        report.figures.update(
            {
                "outages": outages,
                "worker exits (exit code: count)": dict(exit_codes),
                "worker restarts (supervisor)": stack.supervisor.restarts(),
            }
        )
        counts.conclude(
            report, stack, load, settled, args.settle_timeout, unapproved_created_is_lost=True
        )
        if exit_codes:
            logs = [
                p for p in stack.supervisor.logs() if "Traceback" in p.read_text(errors="replace")
            ]
            if logs:
                report.notes.append(
                    f"how a worker ended ({logs[0].name}):\n" + harness.tail(logs[0], 3)
                )
        return counts.finish(report, stack, args)


if __name__ == "__main__":
    sys.exit(main())
