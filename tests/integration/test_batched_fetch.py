"""The batched fetch (kiosk/jobs/fetcher.py) keeps procrastinate's semantics, with real workers.

Order, queueing locks, `lock` serialization across workers, retries, abort, heartbeats, the
stalled-job rescue of buffered jobs, SIGTERM giving buffered jobs back at once, batching off.
"""

from __future__ import annotations

import signal
import time

import pytest

from kiosk import db, queue
from tests.integration.fetch_helpers import (
    SWEEP_APP,
    done,
    fetch_batches,
    insert_jobs,
    max_overlap,
    runs,
    sql_connection,
    start,
    worker_processes,
)
from tests.support import wait_for
from tests.support.jobs import defer

sql = pytest.fixture(sql_connection, name="sql")
workers = pytest.fixture(worker_processes, name="workers")


def rank(job: dict) -> tuple[int, int]:
    return (-job["priority"], job["id"])


async def test_batches_follow_priority_then_id_and_skip_jobs_not_due(
    database_url, log_dir, sql, workers
):
    ids = []
    for priority in (0, 5, 0, 9, 5, 0, 9, 1, 0, 5, 1, 9):
        ids += insert_jobs(sql, 1, queue="t", priority=priority, key=f"p{priority}", sleep=0.3)
    future = sql.value(
        "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW('t', 'tests.fetch.run', 99, "
        "NULL, NULL, '{\"key\": \"future\"}'::jsonb, now() + interval '1 hour')"
        "::procrastinate_job_to_defer_v1]))"
    )
    start(workers, sql, database_url, log_dir, 1, "--concurrency=4", "--queues=t")
    wait_for(lambda: done(sql, ids), timeout=60, what="every due job done")

    jobs = {row["id"]: row for row in sql.all("SELECT * FROM procrastinate_jobs")}
    batches = fetch_batches(sql, ids)
    assert len(batches[0]) == 4, f"the idle worker took its 4 free slots at once: {batches}"
    assert len(batches) < len(ids), "some round trips took several jobs"
    # Every job of a round trip ranks before every job of the later ones.
    for earlier, later_batch in zip(batches, batches[1:], strict=False):
        assert max(rank(jobs[i]) for i in earlier) < min(rank(jobs[i]) for i in later_batch), (
            batches
        )
    assert jobs[future]["status"] == "todo", "a job scheduled later waits, whatever its priority"


async def test_queueing_lock_and_lock_serialization_across_workers(
    pool, database_url, log_dir, sql, workers
):
    # A job freed by a finished `lock` holder is found by polling (no NOTIFY says so): poll often.
    start(
        workers,
        sql,
        database_url,
        log_dir,
        3,
        "--concurrency=4",
        "--fetch-job-polling-interval=0.1",
    )
    # Twelve jobs sharing a `lock` among unlocked ones, on three workers with free slots.
    locked = insert_jobs(sql, 12, lock="shared", key="locked", sleep=0.1)
    free = insert_jobs(sql, 12, key="free", sleep=0.1)
    wait_for(lambda: done(sql, locked + free), timeout=90, what="every job done")
    locked_runs = [run for run in runs(sql) if run["job_id"] in locked]
    assert max_overlap([(r["started"], r["ended"]) for r in locked_runs]) == 1
    assert [r["job_id"] for r in locked_runs] == locked, "one at a time, in id order"
    assert len({r["pid"] for r in runs(sql)}) > 1, "the work was spread over workers"

    # A queueing lock: at most one waiting job; a new one may wait while the first runs.
    first = await defer("tests.fetch.run", queueing_lock="q1", key="q-first", sleep=1)
    wait_for(lambda: sql.job(first)["status"] == "doing", timeout=30, what="the first running")
    second = await defer(
        "tests.fetch.run", queueing_lock="q1", key="q-second", schedule_in={"seconds": 2}
    )
    async with db.transaction() as conn:
        assert await queue.defer(conn, "tests.fetch.run", queueing_lock="q1", key="q-3") is None
    wait_for(lambda: done(sql, [first, second]), timeout=30, what="both runs")
    assert sql.value("SELECT count(*) FROM test_fetch_runs WHERE key LIKE 'q-%%'") == 2


async def test_retries_abort_and_heartbeats(pool, database_url, log_dir, sql, workers):
    (worker,) = start(workers, sql, database_url, log_dir, 1, "--concurrency=4")
    flaky = await defer("tests.flaky", key="f1")
    long = await defer("tests.fetch.run", key="long", sleep=600)
    wait_for(lambda: sql.job(flaky)["status"] == "succeeded", timeout=30, what="the retry")
    assert sql.job(flaky)["attempts"] == 2  # the failed run and the good one
    assert [o["status"] for o in sql.outcomes(flaky)] == ["failed", "succeeded"]

    wait_for(lambda: sql.job(long)["status"] == "doing", timeout=30, what="the long job")
    beat = sql.value("SELECT last_heartbeat FROM procrastinate_workers")
    wait_for(
        lambda: sql.value("SELECT last_heartbeat FROM procrastinate_workers") > beat,
        timeout=10,
        what="a heartbeat while a batch runs",
    )
    assert await queue.app.job_manager.cancel_job_by_id_async(long, abort=True)
    wait_for(lambda: sql.job(long)["status"] == "aborted", timeout=20, what="the abort")
    assert [o["status"] for o in sql.outcomes(long)] == ["aborted"]
    assert worker.alive()


async def test_jobs_of_a_worker_that_dies_are_rescued_even_unstarted(
    pool, database_url, log_dir, sql, workers
):
    # A batch a worker took but never started: fetched with the worker's id, then the worker
    # vanished without a word (its heartbeat stops), exactly what kill -9 leaves of a buffer.
    ghost = sql.value("SELECT worker_id FROM procrastinate_register_worker_v1()")
    unstarted = insert_jobs(sql, 3, key="buffered")
    taken = sql.all("SELECT id FROM kiosk_fetch_jobs(NULL, %s, 3)", ghost)
    assert sorted(row["id"] for row in taken) == unstarted
    # And a real worker killed with a batch running.
    (doomed,) = start(workers, sql, database_url, log_dir, 1, "--concurrency=3")
    running = insert_jobs(sql, 3, key="running", sleep=600)
    wait_for(
        lambda: sql.value("SELECT count(*) FROM test_fetch_runs WHERE key LIKE 'running-%%'") == 3,
        timeout=30,
        what="the batch running",
    )
    doomed.popen.kill()
    doomed.popen.wait()
    sql.conn.execute(
        "UPDATE procrastinate_jobs SET args = args || '{\"sleep\": 0}' WHERE id = ANY(%s)",
        (running,),
    )
    start(workers, sql, database_url, log_dir, 1, "--concurrency=3", app=SWEEP_APP)
    # The real sweep (`jobs.retry_stalled_jobs`, deferred by the periodic deferrer: every minute
    # in production, every 2 s on this worker's test app) finds both.
    wait_for(lambda: done(sql, unstarted + running), timeout=60, interval=0.5, what="rescue")
    for job_id in unstarted + running:
        assert [o["status"] for o in sql.outcomes(job_id)] == ["worker_lost", "succeeded"]
    assert sql.value("SELECT count(*) FROM test_fetch_runs WHERE key LIKE 'buffered-%%'") == 3


async def test_sigterm_puts_buffered_jobs_back_at_once(database_url, log_dir, sql, workers):
    (worker,) = start(
        workers,
        sql,
        database_url,
        log_dir,
        1,
        "--concurrency=10",
        "--queues=t",
        KIOSK_WORKER_SHUTDOWN_TIMEOUT="60",
    )
    # A job that keeps the stopping worker alive (the graceful wait) until the test releases it.
    (long,) = insert_jobs(sql, 1, queue="t", task="tests.fetch.hold", key="long", seconds=120)
    wait_for(lambda: runs(sql), timeout=30, what="the long job running")
    # One round trip takes nine more; the first holds the worker's loop for 3 s, so the others
    # stay in its buffer: fetched (`doing`), not started.
    hogs = insert_jobs(sql, 9, queue="t", task="tests.fetch.hog", key="hog", seconds=3)
    wait_for(
        lambda: (
            sql.value(
                "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'doing'",
                hogs,
            )
            == 9
        ),
        timeout=30,
        interval=0.02,
        what="one round trip taking the nine",
    )
    worker.signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_for(
        lambda: sql.value(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'todo'",
            hogs,
        ),
        timeout=30,
        interval=0.02,
        what="buffered jobs back in todo",
    )
    back_after = time.monotonic() - signalled
    # At once (after the 3 s the loop was held), not when the worker leaves after its long job.
    assert back_after < 8, f"back after {back_after:.1f}s"
    assert worker.alive() and sql.job(long)["status"] == "doing"
    released = sql.all(
        "SELECT id, attempts, worker_id FROM procrastinate_jobs WHERE id = ANY(%s) "
        "AND status = 'todo'",
        hogs,
    )
    assert all(job["attempts"] == 0 and job["worker_id"] is None for job in released)
    assert worker.alive(), "the worker waits for its long job"
    sql.conn.execute("INSERT INTO test_fetch_release (key) VALUES ('long-1')")
    assert worker.popen.wait(60) == 0, worker.output()
    assert sql.job(long)["status"] == "succeeded"
    statuses = {
        row["status"]: row["count"]
        for row in sql.all(
            "SELECT status::text AS status, count(*) AS count FROM procrastinate_jobs "
            "WHERE id = ANY(%s) GROUP BY status",
            hogs,
        )
    }
    assert statuses.get("todo") == len(released) and "doing" not in statuses, statuses
    assert statuses["todo"] + statuses.get("succeeded", 0) == 9
    ran = sql.value("SELECT count(*) FROM test_fetch_runs WHERE key = 'hog'")
    assert ran == statuses.get("succeeded", 0), "a released job never ran"
    # The next worker runs them (without holding its loop).
    sql.conn.execute(
        "UPDATE procrastinate_jobs SET args = args || '{\"seconds\": 0}' WHERE id = ANY(%s)",
        (hogs,),
    )
    (after,) = start(workers, sql, database_url, log_dir, 1, "--concurrency=10", "--queues=t")
    wait_for(lambda: done(sql, hogs), timeout=60, what=f"released jobs run:\n{after.output()}")
    assert sql.value("SELECT count(*) FROM test_fetch_runs WHERE key = 'hog'") == 9


async def test_batching_off_fetches_one_job_per_round_trip(database_url, log_dir, sql, workers):
    # The controls hold through the same SQL function, one job at a time.
    sql.conn.execute("INSERT INTO kiosk_queue_controls (queue, paused) VALUES ('held', true)")
    held = insert_jobs(sql, 3, queue="held", key="held")
    start(
        workers,
        sql,
        database_url,
        log_dir,
        1,
        "--concurrency=4",
        "--queues=t,held",
        KIOSK_WORKER_BATCHING="false",
    )
    ids = insert_jobs(sql, 12, queue="t", key="one", sleep=0.05)
    wait_for(lambda: done(sql, ids), timeout=60, what="every job done")
    assert all(len(batch) == 1 for batch in fetch_batches(sql, ids))
    assert max_overlap([(r["started"], r["ended"]) for r in runs(sql, "t")]) > 1, "still concurrent"
    assert {sql.job(job_id)["status"] for job_id in held} == {"todo"}, "the paused queue waits"


async def test_a_finish_batch_takes_the_jobs_for_the_slots_it_frees(
    database_url, log_dir, sql, workers
):
    start(workers, sql, database_url, log_dir, 1, "--concurrency=4", "--queues=t")
    ids = insert_jobs(sql, 40, queue="t", key="chain", sleep=0.01)
    wait_for(lambda: done(sql, ids), timeout=60, what="every job done")

    # A transaction stamps its events with its start time: a job whose `started` event shares
    # it with other jobs' `succeeded` events was taken by the batch that finished them.
    taken = sql.value(
        "SELECT count(DISTINCT s.job_id) FROM procrastinate_events AS s "
        "JOIN procrastinate_events AS f ON f.at = s.at AND f.type = 'succeeded' "
        "WHERE s.type = 'started' AND s.job_id = ANY(%s) AND f.job_id = ANY(%s)",
        ids,
        ids,
    )
    assert taken > 0, "every job was fetched on its own round trip"
    # Never more jobs taken than slots: a batch's finishes free theirs in the same transaction.
    spans = sql.all(
        "SELECT extract(epoch FROM s.at)::float AS started, "
        "extract(epoch FROM f.at)::float AS ended FROM procrastinate_events AS s "
        "JOIN procrastinate_events AS f ON f.job_id = s.job_id "
        "WHERE s.type = 'started' AND f.type = 'succeeded' AND s.job_id = ANY(%s)",
        ids,
    )
    assert max_overlap([(row["started"], row["ended"]) for row in spans]) <= 4
    assert max_overlap([(r["started"], r["ended"]) for r in runs(sql, "t")]) > 1, "concurrent"
