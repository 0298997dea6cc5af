"""The `kiosk_queue_controls` rows: read and write, nothing else (checks live in the service).

A row exists once something was set on a queue; no row means no control, which `QueueControl.none`
stands for, so callers never handle a missing row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from kiosk import db
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.queues")


@dataclass(frozen=True)
class QueueControl:
    """What workers obey for one queue (docs/workers.md, "Queue controls")."""

    name: str
    paused: bool = False
    paused_reason: str | None = None
    paused_by: str | None = None
    paused_at: dt.datetime | None = None
    max_per_second: float | None = None
    max_running: int | None = None
    # Who set the limits: an operator's name, `cli:<user>`, or SETTINGS_ACTOR (KIOSK_QUEUE_LIMITS).
    limits_set_by: str | None = None
    limits_set_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    changes: int = 0

    @classmethod
    def none(cls, name: str) -> QueueControl:
        """The control of a queue without a row: not paused, no limits."""
        return cls(name)


async def list_controls(conn: psycopg.AsyncConnection) -> list[QueueControl]:
    return await db.fetch_all_as(conn, QueueControl, QUERIES["list_controls"])


async def get_control(conn: psycopg.AsyncConnection, queue: str) -> QueueControl:
    found = await db.fetch_one_as(conn, QueueControl, QUERIES["get_control"], {"queue": queue})
    return found or QueueControl.none(queue)


def _returned(row: QueueControl | None) -> QueueControl:
    """The row an upsert ... RETURNING always returns (MissingRow if it did not)."""
    if row is None:
        raise db.MissingRow("an upsert of kiosk_queue_controls returned no row")
    return row


async def pause(
    conn: psycopg.AsyncConnection, queue: str, reason: str | None, actor: str
) -> QueueControl:
    row = await db.fetch_one_as(
        conn, QueueControl, QUERIES["pause"], {"queue": queue, "reason": reason, "actor": actor}
    )
    return _returned(row)


async def resume(conn: psycopg.AsyncConnection, queue: str) -> QueueControl | None:
    """The resumed queue, or None when it was not paused (nothing written)."""
    return await db.fetch_one_as(conn, QueueControl, QUERIES["resume"], {"queue": queue})


async def _write_limits(
    conn: psycopg.AsyncConnection,
    queue: str,
    max_per_second: float | None,
    max_running: int | None,
    actor: str,
    *,
    default: bool,
) -> QueueControl | None:
    """One upsert for both writers of limits: an operator's always lands, a default may not."""
    return await db.fetch_one_as(
        conn,
        QueueControl,
        QUERIES["set_limits"],
        {
            "queue": queue,
            "max_per_second": max_per_second,
            "max_running": max_running,
            "actor": actor,
            "default": default,
        },
    )


async def set_limits(
    conn: psycopg.AsyncConnection,
    queue: str,
    max_per_second: float | None,
    max_running: int | None,
    actor: str,
) -> QueueControl:
    """An operator's limits: `actor` owns them from now on."""
    return _returned(
        await _write_limits(conn, queue, max_per_second, max_running, actor, default=False)
    )


async def apply_default(
    conn: psycopg.AsyncConnection,
    queue: str,
    max_per_second: float | None,
    max_running: int | None,
    actor: str,
) -> QueueControl | None:
    """The queue when the default changed it; None when an operator owns its limits or they
    already are the default."""
    return await _write_limits(conn, queue, max_per_second, max_running, actor, default=True)


async def clear_dropped_defaults(
    conn: psycopg.AsyncConnection, keep: list[str], actor: str
) -> list[QueueControl]:
    """Clear the limits `actor` (the settings) set on queues not in `keep`; the queues cleared."""
    return await db.fetch_all_as(
        conn, QueueControl, QUERIES["clear_dropped_defaults"], {"keep": keep, "actor": actor}
    )
