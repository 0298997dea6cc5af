"""A pool connection a running worker keeps in autocommit for its own statements.

The batched fetch and the group-committed finishes are each one statement (a SQL function call):
in autocommit that statement is its own transaction, sent in one round trip, where a pooled
transaction costs a checkout (and its connection check), BEGIN and COMMIT besides. Each user keeps
its own connection (a fetch need not wait for a finish batch's commit); psycopg serialises
concurrent statements on one connection. A connection that broke, or that a cancelled statement
left busy, is given back to the pool, which replaces it; the next statement takes a new one.

`asynchronous_commit=True` sets `synchronous_commit = off` on the connection while it is held
(the fetch's: docs/workers.md, "Batched fetch"); it is reset before the connection goes back to
the pool, or the connection is closed, so no other transaction ever commits asynchronously.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from procrastinate import connector as procrastinate_connector
from procrastinate import exceptions
from procrastinate.psycopg_connector import PsycopgConnector
from psycopg import pq
from psycopg import rows as psycopg_rows
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger("kiosk.jobs")


class HeldConnection:
    def __init__(
        self,
        connector: procrastinate_connector.BaseConnector,
        *,
        asynchronous_commit: bool = False,
    ) -> None:
        self._connector = connector
        self._asynchronous_commit = asynchronous_commit
        self._held: tuple[psycopg.AsyncConnection[Any], AsyncConnectionPool] | None = None

    def pool(self) -> AsyncConnectionPool:
        connector = self._connector
        if not isinstance(connector, PsycopgConnector):  # pragma: no cover - kiosk's is one
            raise TypeError(f"HeldConnection needs a PsycopgConnector, not {connector!r}")
        pool: AsyncConnectionPool = connector.pool
        return pool

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The held connection (taken from the pool, in autocommit, when there is none)."""
        pool = self.pool()
        if self._held is not None and (self._held[1] is not pool or _unusable(self._held[0])):
            await self.release()
        if self._held is None:
            conn = await pool.getconn()
            try:
                await conn.set_autocommit(True)
                if self._asynchronous_commit:
                    await conn.execute("SET synchronous_commit = off")
            except BaseException:
                await _give_back(conn, pool)
                raise
            self._held = (conn, pool)
        conn = self._held[0]
        try:
            yield conn
        except BaseException:
            if _unusable(conn):
                await self.release()
            raise

    async def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        await _give_back(*held)


async def _give_back(conn: psycopg.AsyncConnection[Any], pool: AsyncConnectionPool) -> None:
    """Back to the pool as the pool lent it: session settings reset, out of autocommit; a
    connection that cannot be reset is closed (the pool replaces it)."""
    try:
        if not _unusable(conn):
            await conn.execute("RESET synchronous_commit")
            await conn.set_autocommit(False)
    except Exception:  # noqa: BLE001 - never lend it again as it is
        logger.debug("held connection could not be reset", exc_info=True)
        await conn.close()
    try:
        await pool.putconn(conn)  # the pool replaces a closed or broken one
    except Exception:  # noqa: BLE001 - the pool may be closing already
        logger.debug("held connection not returned", exc_info=True)


async def fetch_dicts(
    conn: psycopg.AsyncConnection[Any], query: Any, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run one statement; its rows as dicts. Errors as procrastinate's connector reports them."""
    try:
        async with conn.cursor(row_factory=psycopg_rows.dict_row) as cursor:
            await cursor.execute(query, params)
            return await cursor.fetchall()
    except psycopg.Error as exc:
        raise exceptions.ConnectorException(str(exc)) from exc


def _unusable(conn: psycopg.AsyncConnection[Any]) -> bool:
    return conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE
