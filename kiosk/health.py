"""Liveness and readiness: is the process up, is the database usable by this code version."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from kiosk import db, migrations


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    revision: str | None = None


async def readiness() -> Readiness:
    head = migrations.head_revision()
    try:
        async with db.pool().connection(timeout=2) as conn:
            try:
                row = await db.fetch_one(conn, migrations.ALEMBIC_VERSION_QUERY)
            except psycopg.errors.UndefinedTable:
                row = None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        return Readiness(False, f"database unavailable: {type(exc).__name__}")
    current = row["version_num"] if row else None
    if current != head:
        return Readiness(
            False, f"migrations not at head (database {current}, code {head})", current
        )
    return Readiness(True, "ok", current)
