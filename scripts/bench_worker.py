"""Rough throughput of kiosk's task path against bare procrastinate, on one real worker process.

    DATABASE_URL=postgresql://... KIOSK_ADMIN_TOKEN=... MP_ACCESS_TOKEN=x MP_WEBHOOK_SECRET=x \
        .venv/bin/python scripts/bench_worker.py [jobs] [concurrency] [rounds]

Both variants run the same no-op async task in `procrastinate worker --one-shot`; jobs per second
come from procrastinate_events (first `started` to last `succeeded`), so start-up is not counted.
The kiosk variant is `tasks.app`: outcome middleware (one INSERT per attempt), time limit,
ShutdownRetry. The database must be migrated (`kiosk migrate`); its job tables are emptied.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
TASK = "bench.noop"

if __name__ != "__main__":
    # Imported by the worker processes: `--app=bench_worker.bare_app` or `bench_worker.kiosk_app`.
    from procrastinate import App, PsycopgConnector

    bare_app = App(connector=PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))

    @bare_app.task(name=TASK)
    async def bare_noop(n: int) -> int:
        return n

    from tasks import app as kiosk_app

    @kiosk_app.task(name=TASK)
    async def kiosk_noop(n: int) -> int:
        return n

    if os.environ.get("BENCH_NO_OUTCOMES"):
        kiosk_app.worker_defaults = {}


def run(variant: str, jobs: int, concurrency: int) -> float:
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events, job_outcomes CASCADE")
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
            "SELECT 'default', %s, jsonb_build_object('n', n) FROM generate_series(1, %s) n",
            (TASK, jobs),
        )
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parent}"}
    subprocess.run(
        [sys.executable, "-m", "procrastinate", f"--app=bench_worker.{variant}_app", "worker",
         "--one-shot", f"--concurrency={concurrency}", "--queues=default"],
        env=env, cwd=HERE.parent, check=True, stderr=subprocess.DEVNULL,
    )
    with psycopg.connect(url) as conn:
        done, seconds = conn.execute(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'), "
            "extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded') "
            "                 - min(at) FILTER (WHERE type = 'started')) "
            "FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.task_name = %s",
            (TASK,),
        ).fetchone()
    assert done == jobs, f"{variant}: {done} of {jobs} jobs succeeded"
    return jobs / float(seconds)


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    rates: dict[str, list[float]] = {variant: [] for variant in ("bare", "kiosk")}
    for _ in range(rounds):  # interleaved: the machine is shared, its load drifts
        for variant in rates:
            rates[variant].append(run(variant, jobs, concurrency))
    for name, pick in (("median", statistics.median), ("best", max)):
        bare, kiosk = pick(rates["bare"]), pick(rates["kiosk"])
        print(f"{jobs} jobs, concurrency {concurrency}, {name} of {rounds}: bare {bare:.0f}/s, "
              f"kiosk {kiosk:.0f}/s, kiosk = {100 * kiosk / bare:.0f}% of bare")


if __name__ == "__main__":
    main()
