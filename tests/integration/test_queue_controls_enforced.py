"""The queue controls hold fleet-wide, with several real worker processes (issue 15).

Controls are written straight into kiosk_queue_controls (the table is the contract; the operators'
API is kiosk/queues). Starts and ends are measured inside the tasks (the machine's clock, which is
the database's too).
"""

from __future__ import annotations

import pytest

from tests.integration.fetch_helpers import (
    done,
    insert_jobs,
    max_overlap,
    most_in_a_second,
    runs,
    sql_connection,
    start,
    worker_processes,
)
from tests.support import wait_for

sql = pytest.fixture(sql_connection, name="sql")
workers = pytest.fixture(worker_processes, name="workers")


def clock(sql) -> float:
    return sql.value("SELECT extract(epoch FROM clock_timestamp())::float")


async def test_pause_then_resume_across_three_workers(database_url, log_dir, sql, workers):
    start(workers, sql, database_url, log_dir, 3, "--concurrency=3", "--queues=ctl,other")
    ids = insert_jobs(sql, 60, queue="ctl", key="ctl", sleep=0.4)
    wait_for(lambda: len(runs(sql, "ctl")) >= 12, timeout=30, what="the queue running")

    sql.conn.execute("INSERT INTO kiosk_queue_controls (queue, paused) VALUES ('ctl', true)")
    paused_at = clock(sql)  # after the commit
    # Other queues keep running on the same workers meanwhile.
    others = insert_jobs(sql, 3, queue="other", key="other")
    wait_for(lambda: done(sql, others), timeout=10, what="another queue still served")
    wait_for(
        lambda: clock(sql) > paused_at + 2.5 and all(run["ended"] for run in runs(sql, "ctl")),
        timeout=15,
        what="the running jobs to finish",
    )
    ctl_runs = runs(sql, "ctl")
    late = [run for run in ctl_runs if run["started"] > paused_at + 1.0]
    assert not late, f"started more than 1 s after the pause: {late}"
    taken_after = sql.value(
        "SELECT count(*) FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
        "WHERE j.queue_name = 'ctl' AND e.type = 'started' AND e.at >= to_timestamp(%s)",
        paused_at,
    )
    assert taken_after == 0, "a job of the paused queue changed to doing"
    waiting = sql.value(
        "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'ctl' AND status = 'todo'"
    )
    assert waiting == 60 - len(ctl_runs) > 0, "the rest waits"
    assert (
        sql.value(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'ctl' AND status = 'doing'"
        )
        == 0
    )

    sql.conn.execute("UPDATE kiosk_queue_controls SET paused = false WHERE queue = 'ctl'")
    resumed_at = clock(sql)
    first = wait_for(
        lambda: [run for run in runs(sql, "ctl") if run["started"] > resumed_at],
        timeout=10,
        interval=0.02,
        what="a start after the resume",
    )[0]
    assert first["started"] - resumed_at < 1.0, "waiting jobs start within 1 s of the resume"
    wait_for(lambda: done(sql, ids), timeout=60, what="the queue drained")


async def test_rate_limit_of_ten_per_second_across_four_workers(
    database_url, log_dir, sql, workers
):
    sql.conn.execute(
        "INSERT INTO kiosk_queue_controls (queue, max_per_second) VALUES ('rated', 10)"
    )
    start(workers, sql, database_url, log_dir, 4, "--concurrency=4", "--queues=rated,warm")
    # Warm: a worker's first jobs start late (connections opening, first imports), which no
    # window guard covers; the guarantee is about workers that run.
    warm = insert_jobs(sql, 32, queue="warm", key="warm", sleep=0.2)
    wait_for(lambda: done(sql, warm), timeout=60, what="the workers warm")
    assert len({run["pid"] for run in runs(sql, "warm")}) == 4
    ids = insert_jobs(sql, 50, queue="rated", key="rated")
    wait_for(lambda: done(sql, ids), timeout=60, interval=0.2, what="the queue drained")

    rated = runs(sql, "rated")
    starts = [run["started"] for run in rated]
    assert len(starts) == 50
    t0 = min(starts)
    timeline = [
        (round(run["started"] - t0, 3), run["pid"], run["job_id"])
        for run in sorted(rated, key=lambda run: run["started"])
    ]
    fetched = sql.all(
        "SELECT e.job_id, round((extract(epoch FROM e.at) - %s)::numeric, 3) AS at "
        "FROM procrastinate_events e WHERE e.type = 'started' AND e.job_id = ANY(%s) ORDER BY e.id",
        t0,
        ids,
    )
    assert most_in_a_second(starts) <= 10, f"starts {timeline}\nfetches {fetched}"
    # Starts come in bursts of up to 10 per window: the last burst has no window after it.
    rate = (len(starts) - 10) / (max(starts) - min(starts))
    # 10 starts per 1.2 s window (a guard of 0.2 s for the fetch-to-start gap): 8.3/s by design.
    assert 7.0 <= rate <= 10.0, f"{rate:.2f} starts/s"
    assert len({run["pid"] for run in rated}) > 1, "the four workers shared the queue"


async def test_concurrency_cap_of_two_across_three_workers(database_url, log_dir, sql, workers):
    sql.conn.execute("INSERT INTO kiosk_queue_controls (queue, max_running) VALUES ('capped', 2)")
    start(workers, sql, database_url, log_dir, 3, "--concurrency=3", "--queues=capped,free")
    ids = insert_jobs(sql, 16, queue="capped", key="capped", sleep=0.3)
    free = insert_jobs(sql, 9, queue="free", key="free", sleep=0.3)
    wait_for(lambda: done(sql, ids + free), timeout=60, interval=0.2, what="both queues drained")

    capped = runs(sql, "capped")
    assert max_overlap([(run["started"], run["ended"]) for run in capped]) == 2
    assert max_overlap([(run["started"], run["ended"]) for run in runs(sql, "free")]) > 2
    # The freed place is taken again at once by the worker that freed it, not at the next poll.
    took = max(run["ended"] for run in capped) - min(run["started"] for run in capped)
    assert took < 16 * 0.3 / 2 * 1.6, f"{took:.1f}s for 16 jobs of 0.3 s two at a time"


def test_window_entries_follow_the_jobs_given_back_or_restamped(database_url, sql):
    """The SQL the workers call: a start per job taken; a job given back leaves the window (an
    earlier attempt's start stays); a restamp moves a start to now. No worker process needed."""
    sql.conn.execute("INSERT INTO kiosk_queue_controls (queue, max_per_second) VALUES ('r', 2)")
    worker = sql.value("SELECT worker_id FROM procrastinate_register_worker_v1()")
    first, second, third = insert_jobs(sql, 3, queue="r", key="r")
    taken = sql.all(
        "SELECT id, rate_limited, rate_wake_in FROM kiosk_fetch_jobs('{r}', %s, 10)", worker
    )
    assert [(row["id"], row["rate_limited"]) for row in taken] == [(first, True), (second, True)]
    assert 0 < taken[0]["rate_wake_in"] <= 1.2, "the window is full: wake when it frees"
    assert (
        sql.all("SELECT id FROM kiosk_fetch_jobs('{r}', %s, 10) WHERE id IS NOT NULL", worker) == []
    )

    before = sql.value("SELECT started_at FROM kiosk_queue_starts WHERE job_id = %s", second)
    sql.value("SELECT kiosk_restamp_starts(%s)", [second])
    assert sql.value("SELECT started_at FROM kiosk_queue_starts WHERE job_id = %s", second) > before

    assert sql.value("SELECT kiosk_release_jobs(%s, %s)", [first], worker) == first
    assert sql.job(first)["status"] == "todo" and sql.job(first)["worker_id"] is None
    assert sql.value("SELECT count(*) FROM kiosk_queue_starts WHERE job_id = %s", first) == 0
    # Room again in the window: the next fetch takes the best job, the one given back.
    again = sql.all("SELECT id FROM kiosk_fetch_jobs('{r}', %s, 10) WHERE id IS NOT NULL", worker)
    assert [row["id"] for row in again] == [first]
    assert sql.job(third)["status"] == "todo"
