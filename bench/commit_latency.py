"""Commit-to-start latency: from a committed defer to the job's first line, in an idle worker.

    .venv/bin/python bench/commit_latency.py                  # 500 jobs per variant, then 40 polled
    .venv/bin/python bench/commit_latency.py --samples 1000 --polled 0

Two idle workers on a scratch database, each on its own queue: kiosk's (`tasks.app`, polling
every 1 s as kiosk/queue.py sets it) and bare procrastinate's (its default, 5 s), both with
LISTEN/NOTIFY. This process defers one `bench.stamp` job at a time the way application code does
(`kiosk.queue.defer` on a pooled connection, in a transaction), alternating the two queues, and
notes `time.time()` as soon as COMMIT returns; the job's first act is to note `time.time()` too
(bench/apps.py; same machine, same clock). Before each defer it waits a random 50-150 ms after
the previous job started, so the worker is idle again (waiting on NOTIFY) when the commit comes.
Every 50 jobs per variant it waits (up to --quiet-wait s) for a second in which the cores are at
most --max-busy busy: the machine is shared. The jobs of blocks during which other processes used
at most --max-others cores are also reported apart. Printed: p50/p95/p99/max per variant, when
procrastinate's fetch had returned the job (p50/p99, same origin), the defer transaction's own
duration (BEGIN to COMMIT returned), and the CPU other processes used meanwhile.

Then --polled jobs for a third kiosk worker started with --no-listen-notify, each deferred a
random 50-1050 ms after the previous one started, so the commit falls anywhere in the worker's 1 s
polling interval: the delay polling alone gives (spread over 0-1 s), to show what NOTIFY saves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench import scratch  # noqa: E402

BLOCK = 50  # jobs per variant between two waits for a quiet moment
WORKERS = {  # name: (app, queue, extra flags)
    "kiosk": ("bench.apps.kiosk_app", "bench-kiosk", ()),
    "bare": ("bench.apps.bare_app", "bench-bare", ()),
    "kiosk-polled": ("bench.apps.kiosk_app", "bench-polled", ("--no-listen-notify",)),
}


class Stamps:
    """The `seq time` lines the workers append to one file."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: dict[int, tuple[float, float]] = {}  # seq: (started, fetched)
        self._offset = 0

    async def wait(self, seq: int) -> tuple[float, float]:
        """When job `seq` started and was fetched; the caller bounds the wait (asyncio.timeout)."""
        while seq not in self.seen:
            with self.path.open() as f:
                f.seek(self._offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            self._offset += len(complete)
            for line in complete.splitlines():
                number, started, fetched = line.split()
                self.seen[int(number)] = float(started), float(fetched)
            if seq not in self.seen:
                await asyncio.sleep(0.002)
        return self.seen[seq]


async def sample(
    url: str,
    names: list[str],
    count: int,
    stamps: Stamps,
    first_seq: int,
    gap: tuple[float, float],
    pids: list[int],
    quiet: tuple[float, float],
) -> dict:
    from kiosk import db, queue

    figures = {
        name: {"latency": [], "fetched": [], "commit": [], "others": [], "busy": []}
        for name in names
    }

    def ours() -> float:  # CPU seconds of this process, the workers and the server
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime + scratch.process_cpu(pids) + scratch.server_cpu(url)

    def end_block() -> None:  # every sample of the block gets the cores others used meanwhile
        cores = others.cores(ours() - ours_before)
        for name in names:
            values = figures[name]
            values["others"] += [cores] * (len(values["latency"]) - len(values["others"]))

    seq = first_seq
    for n in range(count):
        if n % BLOCK == 0:  # a quiet moment for each block
            if n:
                end_block()
            busy = scratch.wait_quiet(*quiet)
            for name in names:
                figures[name]["busy"].append(busy)
            others, ours_before = scratch.Others(), ours()
        for name in random.sample(names, len(names)):  # each pair in random order
            # The worker finished the previous job; the commit falls at a random moment after it.
            await asyncio.sleep(random.uniform(*gap))
            async with db.pool().connection() as conn:
                before = time.time()
                async with conn.transaction():
                    await queue.defer(conn, "bench.stamp", queue=WORKERS[name][1], seq=seq)
                committed = time.time()
            try:
                async with asyncio.timeout(10):
                    started, fetched = await stamps.wait(seq)
            except TimeoutError:
                raise SystemExit(f"job {seq} did not start within 10 s") from None
            figures[name]["latency"].append(1000 * (started - committed))
            figures[name]["fetched"].append(1000 * (fetched - committed))
            figures[name]["commit"].append(1000 * (committed - before))
            seq += 1
    end_block()
    return figures


async def measure(url: str, args: argparse.Namespace, stamps: Stamps) -> dict:
    from kiosk import db, queue

    scratch.use(url)
    pool = db.create_pool(role="bench", min_size=1, max_size=2)
    await pool.open(wait=True)
    await queue.app.open_async(pool)
    try:
        figures = {}
        if args.samples:
            figures.update(
                await run_with(url, ["kiosk", "bare"], args.samples, stamps, 0, (0.05, 0.15), args)
            )
        if args.polled:
            figures.update(
                await run_with(
                    url, ["kiosk-polled"], args.polled, stamps, 10**6, (0.05, 1.05), args
                )
            )
        return figures
    finally:
        await queue.app.close_async()
        await db.close_pool()


async def run_with(
    url: str,
    names: list[str],
    count: int,
    stamps: Stamps,
    first_seq: int,
    gap: tuple[float, float],
    args: argparse.Namespace,
) -> dict:
    env = scratch.env(url, BENCH_STAMPS=str(stamps.path))
    since = scratch.db_now(url)
    workers = [
        scratch.worker(
            f"bench-{name}",
            WORKERS[name][0],
            env,
            f"--queues={WORKERS[name][1]}",
            *WORKERS[name][2],
        )
        for name in names
    ]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if any("--no-listen-notify" in WORKERS[name][2] for name in names):
                scratch.wait_for(
                    lambda: (
                        conn.execute(
                            "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat >= %s",
                            (since,),
                        ).fetchone()[0]
                        >= len(names)
                    ),
                    60,
                    "workers registered",
                )
            else:
                scratch.wait_listening(conn, workers, since)
        await asyncio.sleep(1)
        print(f"  {', '.join(names)}: {count} jobs each, load {scratch.load():.1f}", flush=True)
        figures = await sample(
            url,
            names,
            count,
            stamps,
            first_seq,
            gap,
            [w.pid for w in workers],
            (args.max_busy, args.quiet_wait),
        )
        print(f"  done, load {scratch.load():.1f}", flush=True)
        return figures
    finally:
        scratch.stop_all(workers)


def main() -> int:
    scratch.stop_cleanly()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=500, help="jobs per variant with NOTIFY (default 500)"
    )
    parser.add_argument(
        "--polled", type=int, default=40, help="jobs for the polling-only worker (default 40)"
    )
    parser.add_argument(
        "--max-busy",
        type=float,
        default=0.3,
        help="before each block of 50, wait for a second with the cores at most this busy",
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
        default=0.3,
        help="also report the jobs of blocks during which other processes used at most "
        "this many cores (default 0.3)",
    )
    args = parser.parse_args()
    print(scratch.machine())
    stamps = Stamps(scratch.LOGS / f"stamps-{os.getpid()}.txt")
    scratch.LOGS.mkdir(parents=True, exist_ok=True)
    stamps.path.write_text("")
    try:
        with scratch.server() as server, scratch.database(server, "latency") as url:
            print(scratch.server_version(url))
            figures = asyncio.run(measure(url, args, stamps))
    except KeyboardInterrupt:
        return 130
    finally:
        stamps.path.unlink(missing_ok=True)
    print("\ncommit-to-start, milliseconds")
    print(
        "| worker | jobs | p50 | p95 | p99 | max | fetched p50 / p99 | defer transaction p50 "
        "| others' CPU, cores |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, values in figures.items():
        rows = list(
            zip(
                values["latency"],
                values["fetched"],
                values["commit"],
                values["others"],
                strict=True,
            )
        )
        quiet = [row for row in rows if row[3] <= args.max_others]
        for label, chosen in ((name, rows), (f"{name}, quiet blocks only", quiet)):
            if not chosen or (chosen is quiet and len(quiet) == len(rows)):
                continue
            latency, fetched, commit, others = (
                list(column) for column in zip(*chosen, strict=True)
            )
            p = {q: scratch.percentile(latency, q) for q in (50, 95, 99, 100)}
            print(
                f"| {label} | {len(latency)} | {p[50]:.2f} | {p[95]:.2f} | {p[99]:.2f} "
                f"| {p[100]:.1f} | "
                f"{scratch.percentile(fetched, 50):.2f} / {scratch.percentile(fetched, 99):.2f} | "
                f"{scratch.percentile(commit, 50):.2f} | {min(others):.2f}–{max(others):.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
