"""The connection a running worker keeps for its fetches (kiosk/jobs/held.py), on a real pool.

Its commits do not wait for the WAL flush, so it must never go back to the pool that way: job code
borrows the same pool and its transactions must stay durable.
"""

from __future__ import annotations

import psycopg
import pytest

from kiosk import queue
from kiosk.jobs.held import HeldConnection


async def _setting(conn: psycopg.AsyncConnection) -> str:
    cursor = await conn.execute("SHOW synchronous_commit")
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


async def _lent_again(pool, pid: int) -> psycopg.AsyncConnection:
    """Borrow the pool's connections until the one of backend `pid` comes back."""
    borrowed = []
    try:
        for _ in range(pool.max_size):
            conn = await pool.getconn()
            borrowed.append(conn)
            if conn.info.backend_pid == pid:
                return conn
        raise AssertionError(f"the pool never lent backend {pid} again")
    finally:
        for conn in borrowed:
            if conn.info.backend_pid != pid:
                await pool.putconn(conn)


async def test_held_fetch_connection_commits_asynchronously_and_goes_back_reset(pool):
    held = HeldConnection(queue.app.connector, asynchronous_commit=True)
    async with held.use() as conn:
        assert conn.autocommit
        assert await _setting(conn) == "off"
        pid = conn.info.backend_pid
    async with held.use() as again:
        assert again is conn, "kept between statements: no checkout per fetch"
    await held.release()

    lent = await _lent_again(pool, pid)
    try:
        assert not lent.autocommit
        assert await _setting(lent) == "on", "job code borrowing it must commit durably"
    finally:
        await lent.rollback()
        await pool.putconn(lent)


async def test_a_broken_held_connection_is_replaced(pool):
    held = HeldConnection(queue.app.connector)
    async with held.use() as conn:
        pid = conn.info.backend_pid
    async with pool.connection() as other:
        await other.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(psycopg.OperationalError):
        async with held.use() as conn:
            await conn.execute("SELECT 1")
    async with held.use() as conn:
        assert conn.info.backend_pid != pid
        cursor = await conn.execute("SELECT 1")
        assert await cursor.fetchone() == (1,)
    await held.release()
