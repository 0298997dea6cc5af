"""The periodic housekeeping: stalled jobs go back to todo, finished jobs are pruned on time."""

from __future__ import annotations

import pytest

import periodic
from kiosk import db, queue
from kiosk.jobs import maintenance
from tests.support.jobs import Sql, defer


@pytest.fixture
def sql(database_url):
    sql = Sql(database_url)
    yield sql
    sql.close()


def running_on(sql: Sql, job_id: int, heartbeat_age: str) -> int:
    """Make `job_id` `doing` on a new worker whose last heartbeat is `heartbeat_age` old."""
    worker_id = sql.value(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - %s::interval) "
        "RETURNING id",
        heartbeat_age,
    )
    sql.conn.execute(
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s",
        (worker_id, job_id),
    )
    return worker_id


async def test_retry_stalled_jobs_puts_back_only_the_dead_workers_jobs(pool, sql):
    dead_job = await defer("tests.effect", key="dead")
    live_job = await defer("tests.effect", key="live")
    dead_worker = running_on(sql, dead_job, "5 minutes")
    running_on(sql, live_job, "1 second")

    retried = await maintenance.retry_stalled_jobs(queue.app.job_manager, stalled_after=30)

    assert retried == [dead_job]
    dead, live = sql.job(dead_job), sql.job(live_job)
    assert (dead["status"], dead["attempts"]) == ("todo", 1)
    assert live["status"] == "doing"
    (lost,) = sql.outcomes(dead_job)
    assert (lost["attempt"], lost["status"], lost["worker_id"]) == (1, "worker_lost", dead_worker)
    assert lost["task_name"] == "tests.effect" and lost["error_type"] == "WorkerLost"
    assert sql.outcomes(live_job) == []
    # Nothing left to do on the next tick.
    assert await maintenance.retry_stalled_jobs(queue.app.job_manager, stalled_after=30) == []


async def test_the_periodic_task_reads_its_threshold_from_the_settings(pool, sql, monkeypatch):
    from kiosk.settings import get_settings

    job_id = await defer("tests.effect", key="stale")
    running_on(sql, job_id, "20 seconds")
    assert await periodic.retry_stalled_jobs(timestamp=0) == {"retried": []}  # default 30 s
    monkeypatch.setenv("KIOSK_WORKER_STALLED_AFTER", "10")
    monkeypatch.setenv("KIOSK_WORKER_HEARTBEAT_INTERVAL", "5")
    get_settings.cache_clear()
    try:
        assert await periodic.retry_stalled_jobs(timestamp=0) == {"retried": [job_id]}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


async def finished(sql: Sql, status: str, age: str) -> int:
    """A job that reached `status` `age` ago, with an outcome row."""
    job_id = await defer("tests.effect", key=f"{status}-{age}")
    sql.conn.execute("UPDATE procrastinate_jobs SET status = %s WHERE id = %s", (status, job_id))
    sql.conn.execute(
        "UPDATE procrastinate_events SET at = now() - %s::interval WHERE job_id = %s", (age, job_id)
    )
    add_outcome(sql, job_id, age)
    return job_id


def add_outcome(sql: Sql, job_id: int, age: str) -> None:
    sql.conn.execute(
        "INSERT INTO job_outcomes (job_id, attempt, task_name, queue_name, status, started_at, "
        "ended_at, duration_seconds) VALUES (%s, 1, 'tests.effect', 'default', 'succeeded', "
        "now() - %s::interval, now() - %s::interval, 0)",
        (job_id, age, age),
    )


async def test_prune_jobs_keeps_each_status_for_its_retention(pool, sql):
    gone = [
        await finished(sql, "succeeded", "8 days"),
        await finished(sql, "failed", "31 days"),
        await finished(sql, "cancelled", "31 days"),
        await finished(sql, "aborted", "40 days"),
        await finished(sql, "succeeded", "9 days"),
    ]
    kept = [
        await finished(sql, "succeeded", "6 days"),
        await finished(sql, "failed", "29 days"),
        await finished(sql, "aborted", "8 days"),
        await finished(sql, "todo", "90 days"),  # waiting or running jobs are never pruned
        await finished(sql, "doing", "90 days"),
    ]
    add_outcome(sql, 999_999, "31 days")  # an outcome whose job was deleted some other way
    add_outcome(sql, 999_998, "2 days")

    result = await maintenance.prune_jobs(batch_size=2)  # 7 / 30 days: the defaults

    # Outcomes older than the longest retention go whatever their job: the stray one, and
    # the 90-day-old attempts of the jobs still waiting or running.
    assert result.jobs == len(gone) and result.old_outcomes == 3
    assert result.batches >= 4  # 5 jobs in batches of 2, then the outcomes
    remaining = {row["id"] for row in sql.all("SELECT id FROM procrastinate_jobs")}
    assert remaining == set(kept)
    outcome_jobs = {row["job_id"] for row in sql.all("SELECT job_id FROM job_outcomes")}
    assert outcome_jobs == set(kept[:3]) | {999_998}
    assert sql.value("SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%s)", gone) == 0

    # Shorter retentions through the settings' names, e.g. KIOSK_PRUNE_SUCCEEDED_DAYS=5.
    again = await maintenance.prune_jobs(succeeded_days=5, failed_days=7)
    assert again.jobs == 3  # the 6-day success, the 29-day failure and the 8-day abort
    async with db.transaction() as conn:
        rows = await db.fetch_all(conn, "SELECT id FROM procrastinate_jobs ORDER BY id")
    assert [row["id"] for row in rows] == kept[3:]


async def test_prune_of_a_periodic_job_keeps_its_schedule_row(pool, sql):
    """procrastinate_periodic_defers points at jobs; pruning one unlinks it instead of failing."""
    job_id = await finished(sql, "succeeded", "8 days")
    sql.conn.execute(
        "INSERT INTO procrastinate_periodic_defers "
        "(task_name, defer_timestamp, job_id, periodic_id) "
        "VALUES ('jobs.prune_jobs', 1, %s, 'hourly')",
        (job_id,),
    )
    assert (await maintenance.prune_jobs()).jobs == 1
    assert sql.value("SELECT job_id FROM procrastinate_periodic_defers") is None


async def test_a_stalled_job_goes_back_although_a_newer_job_waits_with_its_queueing_lock(pool, sql):
    """procrastinate #1543: the retry would clash on the queueing lock and leave the job `doing`,
    while the newer job waits on their shared `lock` forever."""
    stalled_job = await defer("tests.effect", queueing_lock="order-7-q", lock="order-7", key="a")
    running_on(sql, stalled_job, "5 minutes")
    newer_job = await defer("tests.effect", queueing_lock="order-7-q", lock="order-7", key="b")

    retried = await maintenance.retry_stalled_jobs(queue.app.job_manager, stalled_after=30)

    assert retried == [stalled_job]
    stalled, newer = sql.job(stalled_job), sql.job(newer_job)
    assert (stalled["status"], stalled["queueing_lock"]) == ("todo", None)
    assert (newer["status"], newer["queueing_lock"]) == ("todo", "order-7-q")
