"""Job throughput: kiosk's real task path against bare procrastinate, 1, 2 and 4 worker processes.

    .venv/bin/python bench/job_throughput.py                    # 1,2,4 processes, concurrency 1
    .venv/bin/python bench/job_throughput.py --concurrency 4 --jobs 4000
    .venv/bin/python bench/job_throughput.py --workers 2 --big-table 1000000  # vs 1M finished jobs
    .venv/bin/python bench/job_throughput.py --workers 1 --variants kiosk,kiosk-no-outcomes

One scratch database (two with --big-table: one empty, one holding N finished jobs with their
events and outcome rows). Each run starts the worker processes (`procrastinate worker
--concurrency=C --queues=bench`), waits until they are registered and idle, inserts --jobs no-op
jobs in one transaction (NOTIFY wakes them), waits until none is left, stops the workers. Variants
(bench/apps.py): `bare` = procrastinate.App; `kiosk` = tasks.app (KioskApp: outcome middleware,
time limit, ShutdownRetry); `kiosk-no-outcomes` = tasks.app without the outcome middleware.
Variants (and databases) alternate within each round, in turn, because the machine is shared
and its load drifts; before each run the script waits (up to --quiet-wait s) for a second with the
cores at most --max-busy busy, and a round in which other processes used more than --max-others
cores is run again (up to --attempts times; the last attempt is kept whatever the load).

Two figures per run: jobs per second of wall time, first `started` event to last `succeeded`
(start-up not counted); and CPU milliseconds per job, workers plus PostgreSQL server (when it runs
here), over the same stretch: the steadier figure on a busy machine. Printed: medians over the
rounds, the kiosk/bare ratio of each round's pair (median), the cores other processes used during
the runs and the 1-minute load. Bounded: every wait has a deadline, every run stops its workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench import bigtable, scratch  # noqa: E402

APPS = {
    "bare": ("bench.apps.bare_app", {}),
    "kiosk": ("bench.apps.kiosk_app", {}),
    "kiosk-no-outcomes": ("bench.apps.kiosk_app", {"BENCH_NO_OUTCOMES": "1"}),
}
QUEUE = "bench"


@dataclass
class Run:
    rate: float  # jobs per second of wall time
    cpu_ms: float  # CPU per job, workers + server
    load: float  # 1-minute load average when the run started
    others: float  # cores used by other processes during the run


def run_once(
    url: str, variant: str, processes: int, concurrency: int, jobs: int, quiet: tuple[float, float]
) -> Run:
    app, extra = APPS[variant]
    scratch.wait_quiet(*quiet)
    load = scratch.load()
    since = scratch.db_now(url)
    env = scratch.env(url, **extra, KIOSK_DB_POOL_MAX_SIZE=str(max(10, concurrency + 2)))
    workers = [
        scratch.worker(
            f"bench-{variant}-{i}", app, env, f"--concurrency={concurrency}", f"--queues={QUEUE}"
        )
        for i in range(processes)
    ]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            scratch.wait_listening(conn, workers, since)
            time.sleep(0.3)
            cpu_before = scratch.process_cpu([w.pid for w in workers]) + scratch.server_cpu(url)
            others = scratch.Others()
            first, last = conn.execute(
                "WITH new AS (INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
                "SELECT %s, 'bench.noop', jsonb_build_object('n', n) FROM generate_series(1, %s) n "
                "RETURNING id) SELECT min(id), max(id) FROM new",
                (QUEUE, jobs),
            ).fetchone()

            def done() -> bool:
                for worker in workers:
                    worker.check()
                return not conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                    "AND queue_name = %s",
                    (QUEUE,),
                ).fetchone()[0]

            scratch.wait_for(done, 120 + jobs / 50, f"{jobs} jobs done by {variant}", interval=0.05)
            cpu = (
                scratch.process_cpu([w.pid for w in workers]) + scratch.server_cpu(url) - cpu_before
            )
            # This process's polling is ours too, but tiny; counted as others'.
            others_cores = others.cores(cpu)
    finally:
        scratch.stop_all(workers)
    with psycopg.connect(url, autocommit=True) as conn:
        succeeded, seconds = conn.execute(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'), "
            "extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded') "
            "                 - min(at) FILTER (WHERE type = 'started'))::float "
            "FROM procrastinate_events WHERE job_id BETWEEN %s AND %s",
            (first, last),
        ).fetchone()
        if succeeded != jobs:
            raise SystemExit(f"{variant}: {succeeded} of {jobs} jobs succeeded")
        # Leave the tables as they were (the big one stays big), statistics fresh.
        conn.execute("DELETE FROM procrastinate_jobs WHERE queue_name = %s", (QUEUE,))
        conn.execute("DELETE FROM job_outcomes WHERE task_name = 'bench.noop'")
        conn.execute("VACUUM ANALYZE procrastinate_jobs, procrastinate_events, job_outcomes")
    return Run(jobs / seconds, 1000 * cpu / jobs, load, others_cores)


def main() -> int:
    scratch.stop_cleanly()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="jobs per worker process at once (default 1)"
    )
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per run (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each variant (default 5)")
    parser.add_argument(
        "--variants", default="bare,kiosk", help=f"of {', '.join(APPS)} (default bare,kiosk)"
    )
    parser.add_argument(
        "--max-busy",
        type=float,
        default=0.3,
        help="before a run, wait for a second with the cores at most this busy (default 0.3)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="... for at most this many seconds (default 30)",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.35,
        help=(
            "run a round again when other processes used more cores than this meanwhile "
            "(default 0.35)"
        ),
    )
    parser.add_argument(
        "--attempts", type=int, default=3, help="... at most this many times (default 3)"
    )
    parser.add_argument(
        "--big-table",
        type=int,
        default=0,
        metavar="ROWS",
        help="also a database with ROWS finished jobs; compare it with the empty one",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    variants = args.variants.split(",")
    if unknown := set(variants) - set(APPS):
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    print(scratch.machine())
    try:
        with scratch.server() as server, scratch.database(server, "jobs") as empty:
            print(scratch.server_version(empty))
            databases = {"empty": empty}
            big_ctx = scratch.database(server, "big") if args.big_table else None
            if big_ctx:
                databases[f"{args.big_table:,} jobs"] = big = big_ctx.__enter__()
                print(f"filling {args.big_table:,} finished jobs ...", flush=True)
                seconds = bigtable.fill(big, args.big_table, waiting=False, outcomes=True)
                with psycopg.connect(big) as conn:
                    size = conn.execute(
                        "SELECT pg_size_pretty(pg_database_size(current_database()))"
                    ).fetchone()[0]
                print(f"filled in {seconds:.0f} s, database {size}", flush=True)
            try:
                results = measure(databases, counts, variants, args)
            finally:
                if big_ctx:
                    big_ctx.__exit__(None, None, None)
    except KeyboardInterrupt:
        return 130
    report(results, counts, variants, list(databases), args)
    return 0


def measure(
    databases: dict[str, str], counts: list[int], variants: list[str], args: argparse.Namespace
) -> dict[tuple[int, str, str], list[Run]]:
    results: dict[tuple[int, str, str], list[Run]] = {}
    combos = [(variant, name) for name in databases for variant in variants]
    for processes in counts:
        for n in range(args.rounds):
            shift = n % len(combos)  # each combination goes first in turn
            for attempt in range(1, args.attempts + 1):
                round_runs = {}
                for variant, name in combos[shift:] + combos[:shift]:
                    run = run_once(
                        databases[name],
                        variant,
                        processes,
                        args.concurrency,
                        args.jobs,
                        (args.max_busy, args.quiet_wait),
                    )
                    round_runs[(processes, variant, name)] = run
                    print(
                        f"  {processes} x {variant:<17} {name:<14} {run.rate:6.0f} jobs/s  "
                        f"{run.cpu_ms:5.2f} ms CPU/job  load {run.load:.1f}, "
                        f"others {run.others:.2f} cores",
                        flush=True,
                    )
                noisy = max(run.others for run in round_runs.values()) > args.max_others
                if not noisy or attempt == args.attempts:
                    break
                print(
                    f"  other processes used more than {args.max_others:g} cores: round again",
                    flush=True,
                )
            for key, run in round_runs.items():
                results.setdefault(key, []).append(run)
    return results


def report(
    results: dict[tuple[int, str, str], list[Run]],
    counts: list[int],
    variants: list[str],
    names: list[str],
    args: argparse.Namespace,
) -> None:
    med = scratch.median
    print(
        f"\n{args.jobs} no-op jobs per run, concurrency {args.concurrency} per process, "
        f"{args.rounds} runs each; medians"
    )
    print(
        "| processes | database | variant | jobs/s | CPU ms/job | vs bare, per round "
        "| others' CPU, cores | load |"
    )
    print("|---:|---|---|---:|---:|---:|---|---|")
    for processes in counts:
        for name in names:
            for variant in variants:
                runs = results[(processes, variant, name)]
                ratio = ""
                if variant != "bare" and (processes, "bare", name) in results:
                    bare = results[(processes, "bare", name)]
                    per_round = [r.rate / b.rate for r, b in zip(runs, bare, strict=True)]
                    ratio = f"{100 * med(per_round):.0f} %"
                loads, others = [r.load for r in runs], [r.others for r in runs]
                print(
                    f"| {processes} | {name} | {variant} | {med([r.rate for r in runs]):.0f} | "
                    f"{med([r.cpu_ms for r in runs]):.2f} | {ratio} | "
                    f"{min(others):.2f}–{max(others):.2f} | {min(loads):.1f}–{max(loads):.1f} |"
                )
    if len(names) > 1:
        print(f"\n{names[1]} against empty, per round (median):")
        for processes in counts:
            for variant in variants:
                empty, big = (
                    results[(processes, variant, names[0])],
                    results[(processes, variant, names[1])],
                )
                change = med([b.rate / e.rate - 1 for e, b in zip(empty, big, strict=True)])
                cpu = med([b.cpu_ms / e.cpu_ms - 1 for e, b in zip(empty, big, strict=True)])
                print(
                    f"  {processes} x {variant}: throughput {100 * change:+.0f} %, "
                    f"CPU per job {100 * cpu:+.0f} %"
                )


if __name__ == "__main__":
    sys.exit(main())
