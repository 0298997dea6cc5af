"""Every query in docs/sql.md runs against a migrated database with some jobs in it."""

import re

import psycopg
import pytest

from kiosk import db, queue
from tests.support import PROJECT_DIR

QUERIES = re.findall(r"```sql\n(.*?)```", (PROJECT_DIR / "docs" / "sql.md").read_text(), re.S)


def test_the_doc_has_queries():
    assert len(QUERIES) >= 7


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[0][:40] for q in QUERIES])
async def test_query_runs(query, pool, database_url):
    manager = queue.app.job_manager
    async with db.transaction() as conn:
        for n in range(3):
            await queue.defer(conn, "docs.demo", queue="docs", lock="L", n=n)
    worker = await manager.register_worker()
    job = await manager.fetch_job(queues=None, worker_id=worker)
    from procrastinate.jobs import Status

    await manager.finish_job(job, status=Status.SUCCEEDED, delete_job=False)
    await manager.fetch_job(queues=None, worker_id=worker)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(query).fetchall()
    if "kiosk_queue_depth" in query:
        assert rows == [("docs", 1, 1, 0, 1, rows[0][5])] and rows[0][5].total_seconds() >= 0
    if "kiosk_slowest_tasks" in query:
        assert rows[0][0] == "docs.demo" and rows[0][1] == 1
