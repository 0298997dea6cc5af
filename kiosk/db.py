"""The one way to reach the database: a psycopg pool and a transaction helper.

The API opens the pool in its lifespan and lends it to procrastinate, so rows and job rows share
connections. A worker lets procrastinate open the pool through `create_pool` (its `pool_factory`),
so job code reaches the very same pool with `transaction()`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.rows import class_row, dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from kiosk.settings import load_or_exit

T = TypeVar("T")

_pool: AsyncConnectionPool | None = None

# PostgreSQL keeps 63 bytes of application_name; the host is cut so that the pid survives.
_HOST_CHARS = 40

# A connection given back to the pool less than this long ago is lent again without the check's
# round trip (one of the two to five a job or a webhook transaction makes: docs/benchmarks.md);
# an older one is checked first, so connections left over from a database restart are replaced.
CHECK_AFTER_IDLE_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = (
    weakref.WeakKeyDictionary()
)


async def _check_if_idle(conn: psycopg.AsyncConnection) -> None:
    if time.monotonic() - _returned_at.get(conn, 0.0) >= CHECK_AFTER_IDLE_SECONDS:
        await AsyncConnectionPool.check_connection(conn)


async def _note_return(conn: psycopg.AsyncConnection) -> None:
    if conn.autocommit:  # lent by `autocommit()` and not set back (an error on the way out)
        await conn.set_autocommit(False)
    _returned_at[conn] = time.monotonic()


class DatabaseNotReady(RuntimeError):
    """The pool was used before the process opened it."""


class MissingRow(RuntimeError):
    """A query that returns a row by construction (INSERT ... RETURNING, an aggregate, a row the
    transaction already holds) returned none: a broken query or schema, never bad input."""


def host_prefix(role: str, host: str | None = None) -> str:
    """`kiosk-<role>:<host>:`: how each connection of a `role` process on `host` begins its name."""
    return f"kiosk-{role}:{(host or socket.gethostname())[:_HOST_CHARS]}:"


def application_name(role: str) -> str:
    """PostgreSQL `application_name` of this process: `kiosk-<role>:<host>:<pid>`.

    It shows in `pg_stat_activity`, so operators see which process holds which connection, and
    `kiosk worker-health` finds the workers of its own host (container) by `host_prefix`.
    """
    return f"{host_prefix(role)}{os.getpid()}"


def create_pool(*, role: str = "app", **kwargs: Any) -> AsyncConnectionPool:
    """Build (unopened) the process pool from the settings and make it the current one.

    `role` names the process in its connections' application_name: `api`, `worker` (the
    procrastinate pool factory), `app` for anything else.
    """
    global _pool
    settings = load_or_exit()
    options: dict[str, Any] = {
        "min_size": settings.db_pool_min_size,
        "max_size": max(settings.db_pool_max_size, settings.db_pool_min_size),
        "open": False,
        "check": _check_if_idle,
        "reset": _note_return,
        "name": "kiosk",
        # While the database is down, a request gets its 503 and a job its retry after this
        # (not psycopg's 30 s, longer than a worker's graceful stop, which would abort the job).
        "timeout": settings.db_pool_timeout,
    }
    # procrastinate's pool factory call passes psycopg's own `check` (a round trip before every
    # checkout): the worker keeps kiosk's, which skips it for a connection used moments ago.
    kwargs.pop("check", None)
    options.update(kwargs)
    # procrastinate opens its LISTEN connection with the pool's kwargs: it carries the name too.
    options["kwargs"] = {
        "application_name": application_name(role),
        **(options.get("kwargs") or {}),
    }
    options.setdefault("conninfo", settings.database_url)
    _pool = AsyncConnectionPool(**options)
    return _pool


def pool() -> AsyncConnectionPool:
    if _pool is None:
        raise DatabaseNotReady("the database pool is not open in this process")
    return _pool


async def close_pool() -> None:
    global _pool
    if _pool is not None:
        await _pool.close()
        _pool = None


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection inside one transaction: committed on success, rolled back on error.

    Rows written and jobs deferred (`kiosk.queue.defer(conn, ...)`) on this connection commit
    together or not at all.
    """
    async with pool().connection() as conn, conn.transaction():
        yield conn


@contextlib.asynccontextmanager
async def autocommit() -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection in autocommit mode: each statement is a transaction of its own.

    For work that is one statement (a SQL function doing several things counts as one): it
    commits with its one round trip, without the BEGIN and COMMIT round trips of `transaction()`,
    all or nothing as any statement is.
    """
    async with autocommit_on(pool()) as conn:
        yield conn


@contextlib.asynccontextmanager
async def autocommit_on(
    connections: AsyncConnectionPool,
) -> AsyncIterator[psycopg.AsyncConnection]:
    """`autocommit()` on a given pool (procrastinate's connector holds the worker's)."""
    async with connections.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            # A broken connection is not set back: the pool throws it away.
            if conn.info.transaction_status == pq.TransactionStatus.IDLE:
                await conn.set_autocommit(False)


async def fetch_one(
    conn: psycopg.AsyncConnection, query: Any, params: Any = None, *, prepare: bool | None = None
) -> dict[str, Any] | None:
    """`prepare=False` for a query whose best plan depends on its values (see fetch_all)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params, prepare=prepare)
        return await cur.fetchone()


async def fetch_row(
    conn: psycopg.AsyncConnection, query: Any, params: Any = None, *, prepare: bool | None = None
) -> dict[str, Any]:
    """`fetch_one` for a query that always returns a row; MissingRow (naming the query) if not."""
    row = await fetch_one(conn, query, params, prepare=prepare)
    if row is None:
        first_line = str(query).strip().split("\n", 1)[0]
        raise MissingRow(f"no row from a query that always returns one: {first_line[:120]}")
    return row


async def fetch_value(
    conn: psycopg.AsyncConnection,
    kind: type[T],
    query: Any,
    params: Any = None,
    *,
    prepare: bool | None = None,
) -> T:
    """The first column of the row a query always returns (a count, `now()`), checked to be a
    `kind`: MissingRow without a row, TypeError for another type (NULL included)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params, prepare=prepare)
        row = await cur.fetchone()
    if row is None:
        first_line = str(query).strip().split("\n", 1)[0]
        raise MissingRow(f"no row from a query that always returns one: {first_line[:120]}")
    value = row[0]
    if not isinstance(value, kind):
        raise TypeError(f"expected a {kind.__name__} from the query, got {type(value).__name__}")
    return value


async def fetch_all(
    conn: psycopg.AsyncConnection, query: Any, params: Any = None, *, prepare: bool | None = None
) -> list[dict[str, Any]]:
    """Rows as dicts.

    psycopg prepares a query it has run 5 times on a connection, and PostgreSQL may then switch
    to a generic plan that ignores the values: fine for fixed queries, slow for a filter whose
    selectivity swings with its values (a rare status on a million jobs). Those pass prepare=False.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params, prepare=prepare)
        return await cur.fetchall()


async def fetch_one_as(
    conn: psycopg.AsyncConnection,
    cls: type[T],
    query: Any,
    params: Any = None,
    *,
    prepare: bool | None = None,
) -> T | None:
    """One row as a `cls` (psycopg's `class_row`: the query's columns are its fields), or None."""
    async with conn.cursor(row_factory=class_row(cls)) as cur:
        await cur.execute(query, params, prepare=prepare)
        return await cur.fetchone()


async def fetch_all_as(
    conn: psycopg.AsyncConnection,
    cls: type[T],
    query: Any,
    params: Any = None,
    *,
    prepare: bool | None = None,
) -> list[T]:
    """Rows as `cls` instances (psycopg's `class_row`); `prepare` as in `fetch_all`."""
    async with conn.cursor(row_factory=class_row(cls)) as cur:
        await cur.execute(query, params, prepare=prepare)
        return await cur.fetchall()
