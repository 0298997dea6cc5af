"""The audit log: every admin action that changes something, with who, what, when and target."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kiosk import db
from kiosk.sql import load_queries

# A leaf module (db and sql only): every area that changes something on an operator's behalf
# records it here without importing kiosk.admin.
QUERIES = load_queries("kiosk", "audit.sql")

_NOT_IN_NAME = re.compile(r"[^\w@.\- ]")


@dataclass(frozen=True)
class Operator:
    """Who acts (the audit log's actor) and from where.

    Here rather than in kiosk.admin.actions so that any domain code that changes something on an
    operator's behalf (catalog, schedules) can take one and record it without importing the
    admin actions.
    """

    name: str
    remote_addr: str | None = None


def actor_name(raw: str | None, default: str = "admin") -> str:
    """An operator's self-given name, reduced to safe characters, for the `actor` column."""
    name = _NOT_IN_NAME.sub("", raw or "")[:64].strip()
    return name or default


async def record(
    conn: psycopg.AsyncConnection,
    *,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> None:
    """Write the entry in the caller's transaction: the action and its record commit together."""
    await conn.execute(
        QUERIES["insert_audit"],
        {
            "actor": actor,
            "action": action,
            "target": target,
            "details": Jsonb(details or {}),
            "remote_addr": remote_addr,
        },
    )


async def record_by(
    conn: psycopg.AsyncConnection,
    by: Operator,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """`record` for an Operator: the usual call from domain code, on its change's connection."""
    await record(
        conn,
        actor=by.name,
        action=action,
        target=target,
        details=details,
        remote_addr=by.remote_addr,
    )


async def list_entries(
    conn: psycopg.AsyncConnection, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    return await db.fetch_all(conn, QUERIES["list_audit"], {"before": before, "limit": limit})
