#!/usr/bin/env python3
"""CPU and wall time of the webhook's batch write alone (`inbox.store`), without HTTP.

For each tree given, a child process imports that tree's kiosk, opens a pool of one connection on
a scratch database (migrated by this checkout; older trees' code runs on it unchanged) and stores
`--batches` batches of N signed-order notifications, each for its own provider order with a
payment intent. It prints, per batch: the process's CPU (the API's side), the CPU of its
PostgreSQL backend (from /proc: the server must run on this machine) and the wall time. The trees
take turns within each round, so before and after see the same machine.

    .venv/bin/python bench/webhook_store_cpu.py --trees main=/tmp/wt-mainstart,now=. --rounds 3

The database server is KIOSK_BENCH_DATABASE_URL, else the embedded one in .kiosk/bench-pgdata.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

INTENTS = 20000


def child(size: int, batches: int, offset: int) -> None:
    """In the child: store the batches with the kiosk on sys.path; print the three figures."""
    tree = os.environ["KIOSK_BENCH_TREE"]
    sys.meta_path[:] = [
        f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
    ]
    sys.path.insert(0, tree)
    from kiosk import db, queue
    from kiosk.webhooks import inbox

    tick = os.sysconf("SC_CLK_TCK")

    def cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    def notification(n: int) -> inbox.Notification:
        data_id = f"ORDSTORE{n % INTENTS + 1}"
        body = json.dumps(
            {
                "id": f"store-{n}",
                "type": "order",
                "action": "order.processed",
                "api_version": "v1",
                "date_created": "2026-11-25T12:01:07Z",
                "live_mode": False,
                "data": {"id": data_id, "status": "processed"},
            }
        ).encode()
        return inbox.parse(body, data_id, "order", str(uuid.uuid4()))

    async def run() -> None:
        pool = db.create_pool(min_size=1, max_size=1)
        await pool.open(wait=True)
        await queue.app.open_async(pool)
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT pg_backend_pid()")
            row = await cursor.fetchone()
            assert row is not None
            backend = int(row[0])
        todo = [
            [notification(offset + b * size + i) for i in range(size)] for b in range(batches + 20)
        ]
        for batch in todo[:20]:  # warm-up: plans, caches
            await inbox.store(batch)
        cpu0, pg0, wall0 = time.process_time(), cpu(backend), time.perf_counter()
        for batch in todo[20:]:
            await inbox.store(batch)
        cpu1, pg1, wall1 = time.process_time(), cpu(backend), time.perf_counter()
        print(
            json.dumps(
                {
                    "api_us": (cpu1 - cpu0) / batches * 1e6,
                    "pg_us": (pg1 - pg0) / batches * 1e6,
                    "wall_us": (wall1 - wall0) / batches * 1e6,
                }
            )
        )
        await queue.app.close_async()
        await db.close_pool()

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", default=f"now={PROJECT_DIR}", help="name=path,...")
    parser.add_argument("--sizes", default="1,20", help="notifications per batch")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    import psycopg

    from bench import scratch

    trees = [item.split("=", 1) for item in args.trees.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    with scratch.server() as server, scratch.database(server, "store") as url:
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO orders (id, total_cents, expires_at) "
                "SELECT md5('store-order-' || n)::uuid, 250, now() + interval '1 day' "
                "FROM generate_series(1, %(n)s) AS n",
                {"n": INTENTS},
            )
            conn.execute(
                "INSERT INTO payment_intents (id, order_id, terminal_id, provider_order_id, "
                "idempotency_key, external_reference, amount_cents, status) "
                "SELECT md5('store-intent-' || n)::uuid, md5('store-order-' || n)::uuid, "
                "'T' || n, 'ORDSTORE' || n, 'store-key-' || n, 'store-ref-' || n, 250, "
                "'at_terminal' FROM generate_series(1, %(n)s) AS n",
                {"n": INTENTS},
            )
        offset = 0
        for round_ in range(1, args.rounds + 1):
            for name, tree in trees:
                for size in sizes:
                    with psycopg.connect(url, autocommit=True) as conn:
                        # A new batch's jobs must not collapse into the previous run's.
                        conn.execute("UPDATE procrastinate_jobs SET queueing_lock = NULL")
                    python = Path(tree) / ".venv" / "bin" / "python"
                    out = subprocess.run(
                        [
                            str(python if python.exists() else sys.executable),
                            __file__,
                            "--child",
                            str(size),
                            str(args.batches),
                            str(offset),
                        ],
                        env={**scratch.env(url, KIOSK_LOG_LEVEL="ERROR"), "KIOSK_BENCH_TREE": tree},
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    offset += (args.batches + 20) * size  # new notification ids next time
                    figures = json.loads(out.strip().splitlines()[-1])
                    print(
                        f"round {round_} {name:>8} batch of {size:3d}: "
                        f"API CPU {figures['api_us'] / 1000:6.2f} ms  "
                        f"PostgreSQL CPU {figures['pg_us'] / 1000:6.2f} ms  "
                        f"wall {figures['wall_us'] / 1000:6.2f} ms",
                        flush=True,
                    )
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
