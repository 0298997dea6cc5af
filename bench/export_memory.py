#!/usr/bin/env python3
"""Peak memory of a worker running an orders CSV export, by number of orders (issue 14).

Seeds a scratch database with `--orders` orders (two items each), then for each export size starts
a fresh `procrastinate --app=tasks.app worker --queues=exports`, requests an export of that many
orders, waits for it and reads the worker's peak resident memory (VmHWM in /proc) and its
resident memory before the export. Flat memory: the peak does not grow with the number of orders.

Self-contained (kiosk only, no bench/ or tests/ imports), so that another checkout's interpreter
can run it against that checkout's code, for a before/after comparison:

    .venv/bin/python bench/export_memory.py                       # this checkout
    /path/to/other/.venv/bin/python bench/export_memory.py        # the other checkout's kiosk

The database server is KIOSK_BENCH_DATABASE_URL (a scratch database is created and dropped on it),
else an embedded PostgreSQL in .kiosk/bench-pgdata. docs/benchmarks.md#exports has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

import kiosk
from kiosk import embedded, migrations

TREE = Path(kiosk.__file__).resolve().parent.parent  # the checkout whose code runs
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def seed(url: str, orders: int) -> None:
    """`orders` orders one second apart from START, two items each."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO products (sku, name, price_cents, stock) VALUES "
            "('coffee', 'Coffee', 250, 0), ('croissant', 'Croissant', 300, 0)"
        )
        conn.execute(
            "INSERT INTO orders "
            "(id, status, total_cents, customer_email, expires_at, created_at, paid_at) "
            "SELECT gen_random_uuid(), 'paid', 550, 'customer' || n || '@example.com', t, t, t "
            "FROM generate_series(1, %s) AS n, "
            "LATERAL (SELECT %s + n * interval '1 second') AS s(t)",
            (orders, START),
        )
        conn.execute(
            "INSERT INTO order_items SELECT id, 'coffee', 'Coffee', 250, 1 FROM orders "
            "UNION ALL SELECT id, 'croissant', 'Croissant', 300, 1 FROM orders"
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE orders, order_items")


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def request(count: int) -> str:
    from kiosk import db, exports

    pool = db.create_pool(min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        async with db.transaction() as conn:
            export = await exports.request_export(
                conn, START, START + dt.timedelta(seconds=count + 0.5), "bench"
            )
        return str(export["id"])
    finally:
        await db.close_pool()


def export_once(url: str, count: int, env: dict[str, str], log_dir: Path) -> dict[str, float]:
    log = (log_dir / f"export-worker-{count}.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=tasks.app",
            "worker",
            "--queues=exports",
            "--concurrency=1",
        ],
        env=env,
        cwd=TREE,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        with psycopg.connect(url, autocommit=True) as conn:
            while not conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"the worker did not start; see {log.name}")
                time.sleep(0.2)
            time.sleep(1)  # let it settle after start-up
            before = memory_kib(worker.pid)
            export_id = asyncio.run(request(count))
            started = time.monotonic()
            deadline = started + 900
            while True:
                status, rows = conn.execute(
                    "SELECT status, row_count FROM exports WHERE id = %s", (export_id,)
                ).fetchone()
                if status in ("done", "failed"):
                    break
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"export {export_id} did not finish; see {log.name}")
                time.sleep(0.1)
            seconds = time.monotonic() - started
            columns = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'exports'"
                )
            }
            size = conn.execute(
                "SELECT size_bytes FROM exports WHERE id = %s"
                if "size_bytes" in columns
                else "SELECT octet_length(content) FROM exports WHERE id = %s",
                (export_id,),
            ).fetchone()[0]
            after = memory_kib(worker.pid)
            conn.execute("DELETE FROM exports")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
    return {
        "orders": count,
        "status": status,
        "rows": rows,
        "csv_mib": (size or 0) / 2**20,
        "seconds": seconds,
        "rss_before_mib": before["VmRSS"] / 1024,
        "peak_mib": after["VmHWM"] / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--orders", type=int, default=100_000, help="orders seeded (default 100000)"
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="orders per export, comma-separated"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    log_dir = Path(".kiosk") / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        server = os.environ.get("KIOSK_BENCH_DATABASE_URL")
        if not server:
            server = stack.enter_context(embedded.embedded_server(Path(".kiosk") / "bench-pgdata"))
        name = f"kiosk_bench_export_{os.getpid()}"
        url = embedded.create_database(server, name, replace=True)
        stack.callback(embedded.drop_database, server, name)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "KIOSK_ADMIN_TOKEN": "bench-admin-token-0123456789",
            "MP_ACCESS_TOKEN": "bench-access-token",
            "MP_WEBHOOK_SECRET": "bench-webhook-secret",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(env)
        migrations.upgrade(url)
        seed(url, max(args.orders, *sizes))
        commit = subprocess.run(
            ["git", "-C", str(TREE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        print(f"code: {TREE} (git {commit})")
        print(
            f"{'orders':>8} {'status':>7} {'CSV MiB':>8} {'seconds':>8} "
            f"{'RSS before':>11} {'peak RSS':>9}"
        )
        for count in sizes:
            r = export_once(url, count, env, log_dir)
            print(
                f"{r['orders']:>8} {r['status']:>7} {r['csv_mib']:>8.1f} {r['seconds']:>8.1f} "
                f"{r['rss_before_mib']:>9.1f} M {r['peak_mib']:>7.1f} M",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
