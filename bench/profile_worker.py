"""Where a worker's time per job goes: py-spy on one worker process running no-op jobs.

    .venv/bin/python bench/profile_worker.py                      # kiosk's tasks.app, 4000 jobs
    .venv/bin/python bench/profile_worker.py --variant bare       # procrastinate alone, to compare
    .venv/bin/python bench/profile_worker.py --raw /tmp/worker.txt   # keep py-spy's stacks

Starts one idle worker (concurrency 1) on a scratch database, attaches `py-spy record` to it
(sampling on-CPU Python stacks), inserts the jobs in one transaction, waits until they are done,
then sorts every sample into where it was spent: procrastinate's fetch, finish and other queries
(each split into psycopg's own time and the rest), kiosk's outcome middleware and its INSERT, the
time limit wrapper, the event loop, logging. Printed per job: the worker's CPU (py-spy's share of
it), the PostgreSQL server's CPU, and the wall time, plus the server's transactions per job.

py-spy is in the dev extra (`pip install -e '.[dev]'`); attaching needs ptrace rights (root, or
kernel.yama.ptrace_scope 0). Bounded: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench import scratch  # noqa: E402

APPS = {"kiosk": "bench.apps.kiosk_app", "bare": "bench.apps.bare_app"}
QUEUE = "bench"

# (label, test on one frame "Class.function (path:line)"); the innermost frame that matches decides
# what a sample was for; psycopg's own frames are told apart inside each.
PURPOSES = [
    ("procrastinate: fetch_job query", lambda f: f.startswith("JobManager.fetch_job ")),
    (
        "procrastinate: finish_job query",
        lambda f: f.startswith(("JobManager.finish_job ", "JobManager.retry_job ")),
    ),
    (
        "procrastinate: heartbeat, listener, periodic deferrer, abort polling",
        lambda f: f.startswith(
            (
                "Worker._update_heartbeat ",
                "JobManager.listen_for_jobs ",
                "PeriodicDeferrer.",
                "Worker._poll_jobs_to_abort ",
                "Worker._handle_notification ",
            )
        ),
    ),
    ("kiosk: outcome INSERT (OutcomeWriter.write)", lambda f: f.startswith("OutcomeWriter.")),
    (
        "kiosk: outcome middleware, row building",
        lambda f: f.startswith(("record_outcome ", "_row ")),
    ),
    ("kiosk: time limit (timeouts.limit)", lambda f: f.startswith("limited ")),
    ("procrastinate: logging", lambda f: "logging/__init__.py" in f),
    (
        "procrastinate: job processing (context, middleware, status)",
        lambda f: f.startswith(("Worker._process_job ", "Worker._persist_job_status ")),
    ),
    (
        "procrastinate: fetch loop (semaphore, task creation)",
        lambda f: f.startswith(("Worker._fetch_and_process_jobs ", "Worker._run_loop ")),
    ),
]


WAITING = "waiting in epoll (runnable, not CPU: left out)"


def classify(stack: list[str]) -> tuple[str, bool]:
    """(purpose, inside psycopg) of one sample's stack, root first."""
    if stack and stack[-1].startswith(("EpollSelector.select ", "select ")):
        return WAITING, False
    in_psycopg = any(f"({package}/" in f for f in stack for package in ("psycopg", "psycopg_pool"))
    for frame in reversed(stack):
        for label, test in PURPOSES:
            if test(frame):
                return label, in_psycopg
    if any("asyncio/" in f for f in stack):
        return "event loop (asyncio: selector, callbacks, task switching)", in_psycopg
    if any("<module>" in f or "_find_and_load" in f for f in stack):
        return "start-up (imports)", in_psycopg
    return "other", in_psycopg


def summarize(raw: Path) -> tuple[dict[tuple[str, bool], int], int]:
    counts: dict[tuple[str, bool], int] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        stack = stack_text.split(";")
        if stack and stack[0].startswith(("process ", "thread ")):
            stack = stack[1:]
        counts[classify(stack)] += int(count)
        total += int(count)
    return counts, total


def xacts(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
        "WHERE datname = current_database()"
    ).fetchone()[0]


def main() -> int:
    scratch.stop_cleanly()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", choices=list(APPS), default="kiosk")
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument(
        "--rate", type=int, default=400, help="py-spy samples per second (default 400)"
    )
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks in this file")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[dev]'")
    print(scratch.machine())
    raw = args.raw or Path(tempfile.mkstemp(prefix="kiosk-pyspy-", suffix=".txt")[1])
    try:
        with scratch.server() as server, scratch.database(server, "profile") as url:
            figures = profile(url, spy, raw, args)
    except KeyboardInterrupt:
        return 130
    counts, total = summarize(raw)
    waiting = counts.pop((WAITING, False), 0)
    total -= waiting
    if not args.raw:
        raw.unlink(missing_ok=True)
    jobs = args.jobs
    print(
        f"\n{args.variant}: {jobs} no-op jobs, one worker, concurrency 1; "
        f"busy before {figures['quiet']:.2f}, "
        f"load {figures['load']:.1f}"
    )
    print(
        f"  wall {1000 * figures['wall'] / jobs:.2f} ms/job ({jobs / figures['wall']:.0f} jobs/s); "
        f"CPU per job: worker {1000 * figures['worker_cpu'] / jobs:.2f} ms, "
        f"PostgreSQL {1000 * figures['server_cpu'] / jobs:.2f} ms; "
        f"{figures['xacts'] / jobs:.1f} server transactions per job"
    )
    print(
        f"  py-spy: {total} samples at {args.rate}/s = {total / args.rate / jobs * 1000:.2f} ms of "
        f"on-CPU Python per job ({waiting} more samples in epoll, left out)\n"
    )
    print("| where | share | ms/job | of which in psycopg |")
    print("|---|---:|---:|---:|")
    purposes = collections.Counter()
    for (label, _), n in counts.items():
        purposes[label] += n
    per_job = 1000 / args.rate / jobs
    for label, n in purposes.most_common():
        psy = counts.get((label, True), 0)
        print(
            f"| {label} | {100 * n / total:.0f} % | {n * per_job:.3f} "
            f"| {n and 100 * psy / n:.0f} % |"
        )
    return 0


def profile(url: str, spy: str, raw: Path, args: argparse.Namespace) -> dict[str, float]:
    since = scratch.db_now(url)
    worker = scratch.worker(
        f"bench-profile-{args.variant}",
        APPS[args.variant],
        scratch.env(url),
        "--concurrency=1",
        f"--queues={QUEUE}",
    )
    recorder = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            scratch.wait_listening(conn, [worker], since)
            quiet = scratch.wait_quiet(0.3, 30)
            load = scratch.load()
            recorder = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.5)  # attached and sampling (idle samples are not recorded)
            if recorder.poll() is not None:
                raise SystemExit(f"py-spy could not attach: {recorder.stderr.read().decode()}")
            xacts_before = xacts(conn)
            worker_before = scratch.process_cpu([worker.pid])
            server_before = scratch.server_cpu(url)
            started = time.monotonic()
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
                "SELECT %s, 'bench.noop', jsonb_build_object('n', n) FROM generate_series(1, %s) n",
                (QUEUE, args.jobs),
            )
            polls = 0

            def done() -> bool:
                nonlocal polls
                polls += 1
                return not conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s "
                    "AND status IN ('todo', 'doing')",
                    (QUEUE,),
                ).fetchone()[0]

            scratch.wait_for(done, 60 + args.jobs / 50, "jobs done", interval=0.05)
            wall = time.monotonic() - started
            figures = {
                "wall": wall,
                "worker_cpu": scratch.process_cpu([worker.pid]) - worker_before,
                "server_cpu": scratch.server_cpu(url) - server_before,
                # less this script's own: the INSERT, the polls, the xacts() query itself
                "xacts": xacts(conn) - xacts_before - polls - 2,
                "quiet": quiet,
                "load": load,
            }
        recorder.send_signal(signal.SIGINT)
        recorder.wait(30)
        return figures
    finally:
        if recorder and recorder.poll() is None:
            recorder.kill()
        worker.stop()


if __name__ == "__main__":
    sys.exit(main())
