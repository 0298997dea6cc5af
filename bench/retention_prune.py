#!/usr/bin/env python3
"""Pruning a million inbox rows while webhooks arrive (issue 14): does it slow the webhook path?

Fills webhook_inbox with `--rows` settled notifications (processed, a fifth ignored) received
48-60 days ago, then sends signed Mercado Pago notifications at `--rate` per second for
`--seconds` to `uvicorn kiosk.app:app` twice, with bench/webhook_ingest.py's open-loop load
generator (latency from the due time):
1. quiet: nothing else runs;
2. pruning: the retention query of kiosk/retention.py deletes the old rows meanwhile, batch by
   batch of `--batch` (KIOSK_PRUNE_BATCH_SIZE), in its own process, as the periodic task does.
It prints the webhook latency of both runs, and the pruning's rows per second and slowest batch,
then checks that every old row is gone and every new one is still there.

    .venv/bin/python bench/retention_prune.py                       # 1M rows, 200/s for 20 s
    .venv/bin/python bench/retention_prune.py --rows 100000 --seconds 10

The database is KIOSK_BENCH_DATABASE_URL or DATABASE_URL (a scratch database is created on that
server and dropped), else an embedded PostgreSQL in .kiosk/bench-pgdata. Figures:
docs/benchmarks.md#retention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import psycopg

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bench.webhook_ingest import Api, children, client_main, cpu_seconds, database, percentile, seed  # noqa: E402

LOGS = PROJECT_DIR / ".kiosk" / "bench-logs"


def fill(url: str, rows: int) -> float:
    """`rows` settled notifications received 48-60 days ago, as Mercado Pago sends them."""
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            INSERT INTO webhook_inbox (notification_id, type, action, resource_id, request_id,
                                       payload, state, received_at, processed_at)
            SELECT 'old-' || n, 'order', 'order.processed', 'ORDOLD' || (n %% 50000),
                   md5(n::text)::uuid::text,
                   jsonb_build_object('id', 'old-' || n, 'type', 'order',
                                      'action', 'order.processed',
                                      'api_version', 'v1', 'application_id', '2836150016842090',
                                      'date_created', '2026-10-01T12:01:07Z', 'live_mode', true,
                                      'user_id', '1243567810',
                                      'data', jsonb_build_object('id', 'ORDOLD' || (n %% 50000),
                                                                 'status', 'processed')),
                   CASE WHEN n %% 5 = 0 THEN 'ignored' ELSE 'processed' END,
                   now() - interval '60 days' + n * (interval '12 days' / %(rows)s),
                   now() - interval '60 days' + n * (interval '12 days' / %(rows)s)
            FROM generate_series(1, %(rows)s) AS n
            """,
            {"rows": rows},
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE webhook_inbox")
    return time.monotonic() - started


def prune_main(url: str, batch: int, days: float) -> None:
    """The pruning process: kiosk/retention.py's inbox query, batch by batch, each batch timed."""
    import os

    os.environ["DATABASE_URL"] = url
    import datetime as dt

    from kiosk import db, retention
    from kiosk.sql import load_queries

    table = next(t for t in retention.TABLES if t.name == "webhook_inbox")
    query = load_queries(table.package)[table.query]

    async def run() -> dict:
        pool = db.create_pool(min_size=1, max_size=1)
        await pool.open(wait=True)
        params = {"before": dt.datetime.now(dt.UTC) - dt.timedelta(days=days), "batch_size": batch}
        times, deleted, started = [], 0, time.monotonic()
        try:
            while True:
                t0 = time.monotonic()
                async with db.transaction() as conn:
                    count = (await conn.execute(query, params)).rowcount
                times.append(time.monotonic() - t0)
                deleted += count
                if count < batch:
                    break
        finally:
            await db.close_pool()
        elapsed = time.monotonic() - started
        times.sort()
        return {
            "deleted": deleted,
            "seconds": elapsed,
            "batches": len(times),
            "batch_p50_ms": percentile(times, 0.5) * 1000,
            "batch_p99_ms": percentile(times, 0.99) * 1000,
            "batch_max_ms": times[-1] * 1000,
        }

    print(json.dumps(asyncio.run(run())), flush=True)


def load(
    api: Api, items: list[tuple[str, str]], rate: float, clients: int = 2, connections: int = 32
) -> dict:
    start = time.time() + 1.0
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = []
    for k in range(clients):
        proc = multiprocessing.Process(
            target=client_main,
            args=(
                k,
                api.port,
                items[k::clients],
                rate / clients,
                connections // clients,
                start + k / rate,
                queue,
            ),
        )
        proc.start()
        procs.append(proc)
    results = [queue.get(timeout=len(items) / rate + 120) for _ in procs]
    for proc in procs:
        proc.join(10)
    statuses, latencies = [], []
    for _, st, lat, _, _ in results:
        statuses += st
        latencies += lat
    ok = sorted(lat for st, lat in zip(statuses, latencies, strict=True) if st == 200)
    return {
        "sent": len(items),
        "ok": len(ok),
        "errors": len(items) - len(ok),
        "p50": percentile(ok, 0.5) * 1000,
        "p95": percentile(ok, 0.95) * 1000,
        "p99": percentile(ok, 0.99) * 1000,
        "max": ok[-1] * 1000 if ok else float("nan"),
    }


def show(label: str, r: dict) -> None:
    print(
        f"  {label:<8} sent {r['sent']:>6}  ok {r['ok']:>6}  errors {r['errors']:>3}  "
        f"p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
        f"max {r['max']:7.1f} ms",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="old inbox rows to prune")
    parser.add_argument(
        "--rate", type=float, default=200, help="webhooks per second during each run"
    )
    parser.add_argument("--seconds", type=float, default=20, help="length of each webhook run")
    parser.add_argument("--batch", type=int, default=1000, help="rows per pruning transaction")
    parser.add_argument(
        "--unknown-share",
        type=float,
        default=0.2,
        help="share of notifications for unknown orders (ignored)",
    )
    parser.add_argument("--prune", metavar="URL", help=argparse.SUPPRESS)  # the pruning process
    args = parser.parse_args()
    if args.prune:
        prune_main(args.prune, args.batch, 30)
        return 0

    LOGS.mkdir(parents=True, exist_ok=True)
    count = int(args.rate * args.seconds)
    unknown_every = round(1 / args.unknown_share) if args.unknown_share > 0 else 0
    with database(keep=False) as (url, postmaster):
        orders = seed(url, 2 * count)
        print(f"filling {args.rows} old inbox rows ...", flush=True)
        print(f"  filled in {fill(url, args.rows):.0f} s", flush=True)
        with psycopg.connect(url) as conn:
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('webhook_inbox'))"
            ).fetchone()[0]
        print(f"  webhook_inbox: {size} with its indexes", flush=True)
        api = Api(url, 1, [], LOGS / "retention-api.log")
        try:
            runs = {}
            for phase, offset in (("quiet", 0), ("pruning", count)):
                items = [
                    (
                        f"{phase}-{n}",
                        f"ORDUNKNOWN{phase}{n}"
                        if unknown_every and n % unknown_every == 0
                        else orders[offset + n],
                    )
                    for n in range(count)
                ]
                pruner = None
                if phase == "pruning":
                    pruner = subprocess.Popen(
                        [sys.executable, __file__, "--prune", url, "--batch", str(args.batch)],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    time.sleep(1)  # deleting already
                pg = [postmaster, *children(postmaster)] if postmaster else []
                cpu0 = cpu_seconds(api.pids() + pg)
                t0 = time.monotonic()
                runs[phase] = load(api, items, args.rate)
                cpu = sum(cpu_seconds(api.pids() + pg).get(p, 0) - v for p, v in cpu0.items())
                runs[phase]["cpu"] = cpu / (time.monotonic() - t0)
                if pruner is not None:
                    still_pruning = pruner.poll() is None
                    out, _ = pruner.communicate(timeout=3600)
                    runs["prune"] = json.loads(out.strip().splitlines()[-1])
                    runs["prune"]["outlived_load"] = still_pruning
        finally:
            api.stop()
        print(
            f"webhooks at {args.rate:.0f}/s for {args.seconds:.0f} s, "
            f"{args.unknown_share:.0%} unknown orders:"
        )
        show("quiet", runs["quiet"])
        show("pruning", runs["pruning"])
        p = runs["prune"]
        ended = (
            "still running when the load ended"
            if p["outlived_load"]
            else "ended before the load did"
        )
        print(
            f"pruning: {p['deleted']} rows in {p['seconds']:.1f} s "
            f"({p['deleted'] / p['seconds']:.0f} rows/s), "
            f"{p['batches']} batches of {args.batch}: p50 {p['batch_p50_ms']:.0f} ms, "
            f"p99 {p['batch_p99_ms']:.0f} ms, max {p['batch_max_ms']:.0f} ms; {ended}"
        )
        with psycopg.connect(url) as conn:
            old = conn.execute(
                "SELECT count(*) FROM webhook_inbox WHERE notification_id LIKE 'old-%'"
            ).fetchone()[0]
            new = conn.execute(
                "SELECT count(*) FROM webhook_inbox WHERE notification_id NOT LIKE 'old-%'"
            ).fetchone()[0]
        accepted = runs["quiet"]["ok"] + runs["pruning"]["ok"]
        print(f"check: {old} old rows left (want 0), {new} new rows kept (want {accepted})")
        return 0 if old == 0 and new == accepted else 1


if __name__ == "__main__":
    raise SystemExit(main())
