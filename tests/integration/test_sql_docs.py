"""Every query in docs/sql.md runs against a migrated database with some jobs and outcomes in it."""

import re

import psycopg
import pytest
from procrastinate.jobs import Status

from kiosk import db, queue
from tests.support import PROJECT_DIR
from tests.support.dashboard import record_outcome

QUERIES = re.findall(r"```sql\n(.*?)```", (PROJECT_DIR / "docs" / "sql.md").read_text(), re.S)


def test_the_doc_has_queries():
    assert len(QUERIES) >= 11


async def record(job, status: str, error: Exception | None = None) -> None:
    await record_outcome(
        job.id, job.attempts + 1, status, task=job.task_name, queue_name=job.queue, error=error
    )


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[0][:40] for q in QUERIES])
async def test_query_runs(query, pool, database_url):
    manager = queue.app.job_manager
    async with db.transaction() as conn:
        for n in range(3):
            await queue.defer(conn, "docs.demo", queue="docs", lock="L", n=n)
    worker = await manager.register_worker()
    job = await manager.fetch_job(queues=None, worker_id=worker)  # job 1
    await record(job, "succeeded")
    await manager.finish_job(job, status=Status.SUCCEEDED, delete_job=False)
    await manager.fetch_job(queues=None, worker_id=worker)  # job 2 runs; job 3 waits for its lock
    async with db.transaction() as conn:
        await queue.defer(conn, "docs.flaky", queue="docs", order="o-1")
    flaky = await manager.fetch_job(queues=None, worker_id=worker)  # job 4
    await record(flaky, "failed", ValueError("card declined"))
    await manager.finish_job(flaky, status=Status.FAILED, delete_job=False)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(query).fetchall()
    if "kiosk_queue_depth" in query:
        assert rows == [("docs", 1, 1, 0, 1, rows[0][5])] and rows[0][5].total_seconds() >= 0
    if "kiosk_slowest_tasks" in query:
        assert ("docs.demo", 1) in [row[:2] for row in rows]
    if "FROM kiosk_failed_jobs" in query and "GROUP BY" not in query:
        assert [row[:4] + row[5:] for row in rows] == [
            (4, "docs.flaky", "docs", 1, "ValueError", "card declined")
        ]
        assert rows[0][4] is not None
    if "FROM kiosk_failed_jobs" in query and "GROUP BY" in query:
        assert [row[:3] for row in rows] == [("docs.flaky", "ValueError", 1)]
    if "failure_pct" in query:
        assert (
            rows == [("docs.flaky", 1, 1, rows[0][3], "ValueError")] and float(rows[0][3]) == 100.0
        )
    if "FROM job_outcomes WHERE job_id = 1" in query:
        assert [row[:3] for row in rows] == [(1, "succeeded", "test-worker")]
