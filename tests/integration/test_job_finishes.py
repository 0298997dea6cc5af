"""Group-committed finishes (kiosk/jobs/finisher.py) with real worker processes.

The workers run `tests.support.finish_app`, whose job manager appends `done <id>` once a finish or
retry call has returned and `failed <id>` when it raised: the tests hold those lines against what
the database committed. A row's `xmin` is the transaction that wrote it, so "the finish and the
outcome row in one transaction" is `job.xmin = outcome.xmin`.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.support.jobs import AppWorker, Sql

APP = "tests.support.finish_app.app"


@pytest.fixture
def sql(database_url):
    sql = Sql(database_url)
    yield sql
    sql.close()


@pytest.fixture
def finish_log(tmp_path: Path) -> Path:
    path = tmp_path / "finishes.log"
    path.write_text("")
    return path


@pytest.fixture
def workers():
    started: list[AppWorker] = []
    yield started
    for worker in started:
        if worker.alive():
            worker.popen.kill()
        worker.stop(timeout=5)


def start(workers, database_url, log_dir, finish_log, *args: str, **env: str) -> AppWorker:
    worker = AppWorker(database_url, log_dir, *args, app=APP, FINISH_LOG=str(finish_log), **env)
    workers.append(worker)
    return worker


def reported(finish_log: Path, job_ids: list[int]) -> dict[str, set[int]]:
    """The test's jobs whose finish call returned (`done`) or raised (`failed`); the periodic
    jobs the workers also run are left out."""
    lines = [line.split() for line in finish_log.read_text().splitlines() if line]
    ours = set(job_ids)
    return {
        kind: {int(job_id) for word, job_id in lines if word == kind and int(job_id) in ours}
        for kind in ("done", "failed")
    }


def insert(sql: Sql, task: str, count: int, **args) -> list[int]:
    """`count` jobs in one statement (procrastinate's triggers fire as for a defer)."""
    rows = sql.all(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
        "SELECT 'default', %s, %s::jsonb "
        "FROM generate_series(1, %s) AS n RETURNING id",
        task,
        json.dumps(args),
        count,
    )
    return [row["id"] for row in rows]


def transactions(sql: Sql, job_ids: list[int]) -> list[dict]:
    """Per job: the transaction of its row, of its outcome row and of its last event (and the
    event's time: `now()`, the same for a whole transaction)."""
    return sql.all(
        "SELECT j.id, j.status, j.xmin::text AS job_xact, o.xmin::text AS outcome_xact, "
        "       o.status AS outcome_status, o.attempt, "
        "       (SELECT e.xmin::text FROM procrastinate_events e WHERE e.job_id = j.id "
        "         ORDER BY e.id DESC LIMIT 1) AS event_xact, "
        "       (SELECT e.at FROM procrastinate_events e WHERE e.job_id = j.id "
        "         ORDER BY e.id DESC LIMIT 1) AS event_at "
        "FROM procrastinate_jobs j LEFT JOIN job_outcomes o ON o.job_id = j.id "
        "WHERE j.id = ANY(%s) ORDER BY j.id, o.attempt",
        job_ids,
    )


@pytest.mark.parametrize("batching", ["true", "false"])
async def test_each_finish_commits_with_its_outcome_row(
    database_url, log_dir, sql, finish_log, workers, batching
):
    # Groups of ten jobs that end together: ten finishes arrive at once, whatever the fetch does.
    job_ids = [
        job_id
        for g in range(30)
        for job_id in insert(sql, "tests.gathered", 10, group=f"g{g}", size=10)
    ]
    start(
        workers,
        database_url,
        log_dir,
        finish_log,
        "--concurrency=10",
        KIOSK_WORKER_BATCHING=batching,
    )
    wait_for(
        lambda: len(reported(finish_log, job_ids)["done"]) == 300,
        timeout=60,
        what="300 jobs finished",
    )
    rows = transactions(sql, job_ids)
    assert [row["id"] for row in rows] == job_ids, "one outcome row per job"
    for row in rows:
        assert (row["status"], row["outcome_status"], row["attempt"]) == (
            "succeeded",
            "succeeded",
            1,
        )
        # The finish, its `succeeded` event and the outcome row: one transaction.
        assert row["job_xact"] == row["outcome_xact"] == row["event_xact"], row
    commits = len({row["job_xact"] for row in rows})
    if batching == "true":
        assert commits <= 60, f"{commits} transactions for 300 jobs: no group commit"
    else:
        assert commits == 300, "batching off: each finish is its own transaction"


async def test_a_finish_that_returned_survives_kill_9(
    database_url, log_dir, sql, finish_log, workers
):
    job_ids = insert(sql, "tests.noop", 4000)
    worker = start(workers, database_url, log_dir, finish_log, "--concurrency=10")
    wait_for(
        lambda: len(reported(finish_log, job_ids)["done"]) >= 400,
        timeout=60,
        what="400 finishes returned",
    )
    worker.popen.kill()  # SIGKILL: no shutdown, nothing flushed that was not already written
    worker.popen.wait(timeout=10)

    done = reported(finish_log, job_ids)["done"]
    committed = {
        row["id"]
        for row in sql.all(
            "SELECT id FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'succeeded'",
            job_ids,
        )
    }
    assert len(committed) < len(job_ids), "the worker finished everything before the kill"
    assert done <= committed, f"reported done but not committed: {sorted(done - committed)[:20]}"
    # Committed but not reported: the kill fell between a commit and the callers' return.
    assert len(committed - done) <= 64
    with_outcome = {
        row["job_id"]
        for row in sql.all(
            "SELECT job_id FROM job_outcomes WHERE job_id = ANY(%s) AND status = 'succeeded'",
            job_ids,
        )
    }
    assert with_outcome == committed, "a finished job without its outcome row, or the reverse"


async def test_retries_in_a_batch_keep_retry_at_priority_queue_and_lock(
    database_url, log_dir, sql, finish_log, workers
):
    retried = insert(sql, "tests.retry_moves", 4, group="r", size=8)
    finished = insert(sql, "tests.gathered", 4, group="r", size=8)
    start(workers, database_url, log_dir, finish_log, "--concurrency=8")
    wait_for(
        lambda: len(reported(finish_log, retried + finished)["done"]) == 8,
        timeout=60,
        what="8 jobs reported",
    )
    assert not reported(finish_log, retried + finished)["failed"]

    rows = {row["id"]: row for row in transactions(sql, retried + finished)}
    # One transaction: the outcome rows and the finished jobs share its xid; a retry runs in a
    # subtransaction (its own xid), so its event's now(), the transaction's start, is compared.
    (commit,) = {row["outcome_xact"] for row in rows.values()}
    assert {rows[job_id]["job_xact"] for job_id in finished} == {commit}
    assert len({row["event_at"] for row in rows.values()}) == 1, rows
    for job_id in retried:
        job = sql.job(job_id)
        assert job["status"] == "todo" and job["attempts"] == 1
        assert job["scheduled_at"] == datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
        assert (job["priority"], job["queue_name"], job["lock"]) == (
            7,
            "finish-retried",
            f"finish-lock-{job_id}",
        )
        row = rows[job_id]
        assert (row["outcome_status"], row["attempt"]) == ("failed", 1)
        (outcome,) = sql.outcomes(job_id)
        assert outcome["error_type"] == "ValueError" and "fails in r" in outcome["traceback"]
    for job_id in finished:
        assert rows[job_id]["status"] == "succeeded"


async def test_delete_jobs_is_honoured(database_url, log_dir, sql, finish_log, workers):
    deleted = insert(sql, "tests.gathered", 5, group="d", size=5)
    kept = insert(sql, "tests.sync_fail", 1, key="d")
    start(workers, database_url, log_dir, finish_log, "--concurrency=6", "--delete-jobs=successful")
    wait_for(
        lambda: len(reported(finish_log, deleted + kept)["done"]) == 6,
        timeout=60,
        what="6 jobs reported",
    )
    assert not sql.all("SELECT id FROM procrastinate_jobs WHERE id = ANY(%s)", deleted)
    assert sql.job(kept[0])["status"] == "failed"
    # The outcome rows stay: they are the record of what ran (no foreign key on purpose).
    statuses = sql.all("SELECT status FROM job_outcomes WHERE job_id = ANY(%s)", [*deleted, *kept])
    assert sorted(row["status"] for row in statuses) == ["failed"] + ["succeeded"] * 5


async def test_a_failing_batch_fails_each_of_its_callers(
    database_url, log_dir, sql, finish_log, workers
):
    # A trigger refuses the outcome row of `tests.poisoned`: the statement of its batch fails.
    sql.conn.execute(
        """
        CREATE FUNCTION test_refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'outcome refused for job %', NEW.job_id; END $$;
        CREATE TRIGGER test_refuse_outcome BEFORE INSERT ON job_outcomes FOR EACH ROW
            WHEN (NEW.task_name = 'tests.poisoned') EXECUTE FUNCTION test_refuse_outcome();
        """
    )
    try:
        batch = insert(sql, "tests.gathered", 4, group="p", size=5) + insert(
            sql, "tests.poisoned", 1, group="p", size=5
        )
        worker = start(workers, database_url, log_dir, finish_log, "--concurrency=5")
        wait_for(
            lambda: len(reported(finish_log, batch)["failed"]) == 5,
            timeout=60,
            what="the 5 callers of the batch to fail",
        )
        assert reported(finish_log, batch)["failed"] == set(batch)
        assert not reported(finish_log, batch)["done"]
        # Nothing of the batch was committed: no finished state, no outcome row.
        assert {sql.job(job_id)["status"] for job_id in batch} == {"doing"}
        assert not sql.all("SELECT id FROM job_outcomes WHERE job_id = ANY(%s)", batch)

        # The worker goes on: the next batch commits.
        (later,) = insert(sql, "tests.noop", 1)
        wait_for(
            lambda: later in reported(finish_log, [later])["done"], timeout=30, what="a later job"
        )
        assert sql.job(later)["status"] == "succeeded" and worker.alive()
    finally:
        sql.conn.execute(
            "DROP TRIGGER IF EXISTS test_refuse_outcome ON job_outcomes; "
            "DROP FUNCTION IF EXISTS test_refuse_outcome()"
        )


async def test_a_refused_finish_fails_only_its_own_caller(
    database_url, log_dir, sql, finish_log, workers
):
    """A job ended by someone else meanwhile (here by hand; the stalled-job sweep or an operator
    in real life) is refused; the rest of its batch commits."""
    group = insert(sql, "tests.gathered", 4, group="t", size=6)
    (taken,) = insert(sql, "tests.poisoned", 1, group="t", size=6)
    start(workers, database_url, log_dir, finish_log, "--concurrency=6")
    wait_for(
        lambda: sql.one(
            "SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'doing'", taken
        ),
        timeout=60,
        what="the job to start",
    )
    # While it waits for its group, someone else ends it (as the sweep or an operator would).
    sql.conn.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", (taken,))
    group += insert(sql, "tests.gathered", 1, group="t", size=6)  # the sixth: all six end at once
    wait_for(
        lambda: (
            len(reported(finish_log, group + [taken])["done"])
            + len(reported(finish_log, group + [taken])["failed"])
            == 6
        ),
        timeout=60,
        what="6 callers answered",
    )
    assert reported(finish_log, group + [taken])["failed"] == {taken}
    assert reported(finish_log, group + [taken])["done"] == set(group)
    assert {sql.job(job_id)["status"] for job_id in group} == {"succeeded"}
    assert sql.job(taken)["status"] == "failed"
    assert not sql.outcomes(taken), "no outcome row for a refused finish"
