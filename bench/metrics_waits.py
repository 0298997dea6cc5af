"""What counting job wait times costs a /metrics scrape (a script, not a test).

    .venv/bin/python bench/metrics_waits.py                  # 1,000,000 finished jobs
    .venv/bin/python bench/metrics_waits.py --rows 200000    # quicker

Fills a scratch database (bench/bigtable.py: jobs with their deferred, started and finished
events) and times, median of --repeat runs, the two queries `kiosk.metrics` runs for
`kiosk_job_wait_seconds` at each scrape: `events_head` (where the settled events end) and
`wait_buckets` over the newest 1,000, 10,000 and WAIT_EVENTS_PER_SCRAPE events (a scrape after
that many events: about a third of them are starts). Prints the load of the machine with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import psycopg  # noqa: E402

from bench import scratch  # noqa: E402
from bench.bigtable import fill  # noqa: E402
from kiosk.metrics import QUERIES, WAIT_BUCKETS, WAIT_EVENTS_PER_SCRAPE  # noqa: E402


def timed(conn: psycopg.Connection, query: str, params: dict, repeat: int) -> tuple[float, int]:
    """Median milliseconds of `repeat` runs, and the rows of the last one."""
    times, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = len(conn.execute(query, params).fetchall())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="finished jobs")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scratch.stop_cleanly()
    with scratch.server() as server, scratch.database(server, "waits") as url:
        seconds = fill(url, args.rows)
        print(f"{args.rows:,} jobs with their events in {seconds:.0f} s; {scratch.machine()}")
        with psycopg.connect(url, autocommit=True) as conn:
            events = conn.execute("SELECT count(*) FROM procrastinate_events").fetchone()[0]
            print(f"procrastinate_events: {events:,} rows")
            ms, _ = timed(conn, QUERIES["events_head"], {}, args.repeat)
            print(f"events_head: {ms:.2f} ms")
            head = conn.execute("SELECT max(id) FROM procrastinate_events").fetchone()[0]
            for span in (1_000, 10_000, WAIT_EVENTS_PER_SCRAPE):
                params = {"bounds": list(WAIT_BUCKETS), "after": head - span, "until": head}
                starts = conn.execute(
                    "SELECT count(*) FROM procrastinate_events WHERE id > %(after)s "
                    "AND id <= %(until)s AND type = 'started'",
                    params,
                ).fetchone()[0]
                ms, rows = timed(conn, QUERIES["wait_buckets"], params, args.repeat)
                print(
                    f"wait_buckets over {span:,} events ({starts:,} starts): {ms:.1f} ms, "
                    f"{rows} (queue, task, bucket) rows; load {scratch.load():.2f}"
                )


if __name__ == "__main__":
    main()
