"""Transactional enqueue: a row and its job commit together or not at all."""

import pytest

from kiosk import db, queue

TASK = "tests.probe"


@pytest.fixture
async def probe_table(pool):
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS enqueue_probe (id int PRIMARY KEY)")
    yield
    async with db.transaction() as conn:
        await conn.execute("DROP TABLE IF EXISTS enqueue_probe")


async def counts(probe_id: int) -> tuple[int, int]:
    async with db.transaction() as conn:
        rows = await db.fetch_one(
            conn, "SELECT count(*) AS n FROM enqueue_probe WHERE id = %s", (probe_id,)
        )
        jobs = await db.fetch_one(
            conn,
            "SELECT count(*) AS n FROM procrastinate_jobs "
            "WHERE task_name = %s AND args->>'probe_id' = %s",
            (TASK, str(probe_id)),
        )
    return rows["n"], jobs["n"]


class Boom(Exception):
    pass


async def test_rollback_leaves_neither_row_nor_job(probe_table):
    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO enqueue_probe VALUES (1)")
            job_id = await queue.defer(conn, TASK, probe_id=1)
            assert job_id is not None
            raise Boom
    assert await counts(1) == (0, 0)


async def test_commit_leaves_both(probe_table):
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO enqueue_probe VALUES (2)")
        job_id = await queue.defer(conn, TASK, probe_id=2)
    assert await counts(2) == (1, 1)
    async with db.transaction() as conn:
        job = await db.fetch_one(
            conn, "SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)
        )
    assert job["status"] == "todo"


async def test_queueing_lock_clash_does_not_poison_the_transaction(probe_table):
    async with db.transaction() as conn:
        first = await queue.defer(conn, TASK, queueing_lock="probe-3", probe_id=3)
        second = await queue.defer(conn, TASK, queueing_lock="probe-3", probe_id=3)
        # The transaction is still usable after the clash.
        await conn.execute("INSERT INTO enqueue_probe VALUES (3)")
    assert first is not None and second is None
    assert await counts(3) == (1, 1)


async def test_clash_with_a_job_committed_earlier(probe_table):
    async with db.transaction() as conn:
        await queue.defer(conn, TASK, queueing_lock="probe-4", probe_id=4)
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO enqueue_probe VALUES (4)")
        assert await queue.defer(conn, TASK, queueing_lock="probe-4", probe_id=4) is None
    assert await counts(4) == (1, 1)
