"""Every attempt of every job leaves a row in job_outcomes; async tasks have time limits."""

from __future__ import annotations

import pytest

from kiosk import db, queue
from kiosk.jobs import outcomes
from tests.support import wait_for
from tests.support.jobs import TABLES, AppWorker, Sql, defer


@pytest.fixture
def sql(database_url):
    sql = Sql(database_url)
    sql.conn.execute(TABLES)
    yield sql
    sql.close()


def final(sql: Sql, job_id: int) -> bool:
    return sql.job(job_id)["status"] in ("succeeded", "failed", "aborted")


async def test_an_outcome_row_for_every_attempt(pool, database_url, log_dir, sql):
    jobs = {
        "flaky": await defer("tests.flaky", key="f1"),
        "sync_fail": await defer("tests.sync_fail", key="s1"),
        "sync_ok": await defer("tests.sync_ok", key="s2"),
        "big": await defer("tests.big_result", size=50_000),
        "slow": await defer("tests.slow", seconds=30),
        "default_limit": await defer("tests.default_limit", seconds=30),
        "own_timeout": await defer("tests.own_timeout_error"),
    }
    worker = AppWorker(database_url, log_dir, "--concurrency=4", KIOSK_JOB_TIMEOUT="1")
    try:
        for name, job_id in jobs.items():
            wait_for(lambda job_id=job_id: final(sql, job_id), timeout=60, what=f"{name} to finish")
    finally:
        worker.stop()
    rows = {name: sql.outcomes(job_id) for name, job_id in jobs.items()}

    # A failure, then the retry that succeeded: the traceback of the failing attempt is kept.
    failed, ok = rows["flaky"]
    assert (failed["attempt"], failed["status"], ok["attempt"], ok["status"]) == (
        1,
        "failed",
        2,
        "succeeded",
    )
    assert failed["error_type"] == "ValueError"
    assert failed["error_message"] == "first attempt of f1 fails"
    assert "Traceback" in failed["traceback"] and "in flaky" in failed["traceback"]
    assert failed["result"] is None
    assert ok["result"] == {"key": "f1", "ok": True} and ok["traceback"] is None
    for row in (failed, ok):
        assert row["task_name"] == "tests.flaky" and row["queue_name"] == "default"
        assert row["worker_id"] is not None and row["worker_name"] == "worker"
        assert row["ended_at"] >= row["started_at"] and row["duration_seconds"] >= 0

    # Sync tasks go through the same middleware.
    (sync_fail,) = rows["sync_fail"]
    assert (sync_fail["status"], sync_fail["error_type"]) == ("failed", "RuntimeError")
    assert "sync task s1 failed" in sync_fail["traceback"]
    assert [r["result"] for r in rows["sync_ok"]] == ["sync s2"]

    # A large return value is kept as a truncated preview, still valid JSON.
    (big,) = rows["big"]
    assert big["result"]["truncated"] is True and big["result"]["length"] == 50_002
    assert len(big["result"]["preview"]) == outcomes.RESULT_LIMIT

    # Time limits: the task's own (0.5 s, then its retry is quick), and KIOSK_JOB_TIMEOUT (1 s).
    timed_out, in_time = rows["slow"]
    assert (timed_out["status"], timed_out["error_type"]) == ("timed_out", "JobTimeout")
    assert "0.5s time limit" in timed_out["error_message"] and timed_out["traceback"]
    assert 0.4 < timed_out["duration_seconds"] < 5
    assert (in_time["status"], in_time["result"]) == ("succeeded", "in time")
    assert sql.job(jobs["slow"])["status"] == "succeeded"
    (default_limit,) = rows["default_limit"]
    assert (
        default_limit["status"] == "timed_out" and "1s time limit" in default_limit["error_message"]
    )
    assert sql.job(jobs["default_limit"])["status"] == "failed"  # no retry policy: failed for good
    # A TimeoutError raised by the task itself is a plain failure.
    (own,) = rows["own_timeout"]
    assert (own["status"], own["error_type"]) == ("failed", "TimeoutError")

    # The admin-facing queries.
    async with db.transaction() as conn:
        listed = await outcomes.for_job(conn, jobs["flaky"])
        failures = await outcomes.recent_failures(conn)
        of_task = await outcomes.recent_failures(conn, task_name="tests.slow")
    assert [(o.attempt, o.status) for o in listed] == [(1, "failed"), (2, "succeeded")]
    assert {o.job_id for o in failures} == {
        jobs["flaky"],
        jobs["sync_fail"],
        jobs["slow"],
        jobs["default_limit"],
        jobs["own_timeout"],
    }
    assert all(o.status != "succeeded" for o in failures)
    assert [o.ended_at for o in failures] == sorted((o.ended_at for o in failures), reverse=True)
    assert [(o.job_id, o.status) for o in of_task] == [(jobs["slow"], "timed_out")]


async def test_an_operator_abort_is_final_and_recorded(pool, database_url, log_dir, sql):
    worker = AppWorker(database_url, log_dir, "--abort-job-polling-interval=0.5")
    try:
        job_id = await defer("tests.effect", key="abort-me", first_sleep=600)
        wait_for(
            lambda: sql.one("SELECT 1 FROM test_job_starts WHERE key = 'abort-me'"),
            timeout=60,
            what="the job to start",
        )
        assert await queue.app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        wait_for(lambda: final(sql, job_id), timeout=30, what="the abort")
    finally:
        worker.stop()
    job = sql.job(job_id)
    # Not retried, although every kiosk task retries a shutdown's cancellation.
    assert job["status"] == "aborted"
    (row,) = sql.outcomes(job_id)
    assert (row["status"], row["error_type"]) == ("aborted", "CancelledError")
