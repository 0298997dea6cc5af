"""Rough throughput of kiosk's task path against bare procrastinate, on one real worker process.

    DATABASE_URL=postgresql://... KIOSK_ADMIN_TOKEN=... MP_ACCESS_TOKEN=x MP_WEBHOOK_SECRET=x \
        .venv/bin/python scripts/bench_worker.py [jobs] [concurrency] [rounds]

Both variants run the same no-op async task in `procrastinate worker --one-shot`, in pairs of
alternating order (the machine is shared and its load drifts). Two figures: jobs per second of
wall time, from procrastinate_events (first `started` to last `succeeded`, so start-up is not
counted), compared pair by pair; and CPU per job of the worker plus the PostgreSQL server (when it
runs on this machine), less the start-up CPU measured on an empty queue: the steadier figure on a
busy machine. The kiosk variant is `tasks.app`: outcome middleware (one INSERT per attempt), time
limit, ShutdownRetry; BENCH_NO_OUTCOMES=1 leaves the middleware out, to see its share.
The database must be migrated (`kiosk migrate`); its job tables are emptied.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import subprocess
import sys
import time
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


def server_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL server (only when it runs on this machine)."""
    try:
        with psycopg.connect(url) as conn:
            (backend,) = conn.execute("SELECT pg_backend_pid()").fetchone()
            postmaster = int(_stat(backend)[1])
        total = _ticks(postmaster, children=True)  # includes the backends that have exited
    except (OSError, ValueError, IndexError):
        return math.nan
    for entry in Path("/proc").iterdir():
        try:
            fields = _stat(int(entry.name)) if entry.name.isdigit() else None
            if fields and int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ticks(pid: int, children: bool) -> int:
    fields = _stat(pid)
    return sum(int(f) for f in (fields[11:15] if children else fields[11:13]))


def run(variant: str, jobs: int, concurrency: int) -> tuple[float, float]:
    """Jobs per second of wall time, and CPU seconds (worker + server) for the whole run."""
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events, job_outcomes CASCADE")
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
            "SELECT 'default', %s, jsonb_build_object('n', n) FROM generate_series(1, %s) n",
            (TASK, jobs),
        )
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parent}"}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server_cpu(url)
    subprocess.run(
        [sys.executable, "-m", "procrastinate", f"--app=bench_worker.{variant}_app", "worker",
         "--one-shot", f"--concurrency={concurrency}", "--queues=default"],
        env=env, cwd=HERE.parent, check=True, stderr=subprocess.DEVNULL,
    )
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.2)  # let the server reap the worker's backends
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
           + server_cpu(url) - server_before)
    if not jobs:
        return math.nan, cpu
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
    return jobs / float(seconds), cpu


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    variants = ("bare", "kiosk")
    # Start-up CPU (imports, periodic deferrer) is measured on an empty queue and taken off.
    startup = {v: statistics.median(run(v, 0, concurrency)[1] for _ in range(3)) for v in variants}
    rates: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    ratios = []
    for n in range(rounds):  # pairs, in alternating order: the machine's load drifts
        for variant in variants if n % 2 == 0 else variants[::-1]:
            rate, seconds = run(variant, jobs, concurrency)
            rates[variant].append(rate)
            cpu[variant].append(1000 * (seconds - startup[variant]) / jobs)
        ratios.append(rates["kiosk"][-1] / rates["bare"][-1])
    med = {v: statistics.median(rates[v]) for v in variants}
    ms = {v: statistics.median(cpu[v]) for v in variants}
    print(f"{jobs} jobs, concurrency {concurrency}, {rounds} pairs")
    print(f"  wall: bare {med['bare']:.0f} jobs/s, kiosk {med['kiosk']:.0f} jobs/s (medians); "
          f"kiosk/bare per pair, median {100 * statistics.median(ratios):.0f}%")
    print(f"  cpu per job (worker + server): bare {ms['bare']:.2f} ms, kiosk {ms['kiosk']:.2f} ms; "
          f"bare/kiosk {100 * ms['bare'] / ms['kiosk']:.0f}%")


if __name__ == "__main__":
    main()
