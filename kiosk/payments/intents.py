"""Payment intents, the kiosk's record of its charges: one intent is one charge attempt and maps
to one Mercado Pago order.

This module owns the `payment_intents` rows and their queries; what a charge means for its order
(charging an order, following Mercado Pago, settling, closing, resolving) is the order lifecycle,
in `kiosk.orders.lifecycle`, which imports this module (never the other way round).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import db, queue
from kiosk.errors import NotFound
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.payments")
logger = logging.getLogger("kiosk.payments")

OPEN = frozenset({"created", "at_terminal", "unresolved"})
RESOLVE_TASK = "payments.resolve_intent"
# Seconds before the first resolution attempt of an ambiguous create (then the job's backoff).
RESOLVE_DELAY_SECONDS = 1
UNPAID_FINAL = frozenset({"failed", "canceled", "expired", "action_required"})
# Margin past the Mercado Pago call's deadline before a start that recorded nothing is resolved.
START_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class Intent:
    id: uuid.UUID
    order_id: uuid.UUID
    terminal_id: str
    provider_order_id: str | None
    status: str
    status_detail: str | None
    last_error: str | None
    created_at: dt.datetime


def from_row(row: dict[str, Any]) -> Intent:
    return Intent(
        id=row["id"],
        order_id=row["order_id"],
        terminal_id=row["terminal_id"],
        provider_order_id=row["provider_order_id"],
        status=row["status"],
        status_detail=row["status_detail"],
        last_error=row["last_error"],
        created_at=row["created_at"],
    )


async def lock_order(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> None:
    """Lock the intent's order row, as every change of a charge does first (the order, then the
    intent: one lock order in every path); NotFound when there is none."""
    if await db.fetch_one(conn, QUERIES["lock_order_of_intent"], {"order_id": order_id}) is None:
        raise NotFound(f"order {order_id} not found")


async def get_row(conn: psycopg.AsyncConnection, intent_id: uuid.UUID) -> dict[str, Any]:
    """The intent's row; NotFound when there is none."""
    row = await db.fetch_one(conn, QUERIES["get_intent"], {"id": intent_id})
    if row is None:
        raise NotFound(f"payment intent {intent_id} not found")
    return row


async def list_for_order(order_id: uuid.UUID) -> list[Intent]:
    async with db.transaction() as conn:
        rows = await db.fetch_all(conn, QUERIES["intents_of_order"], {"order_id": order_id})
    return [from_row(row) for row in rows]


async def find_by_provider_order(
    conn: psycopg.AsyncConnection, provider_order_id: str
) -> Intent | None:
    row = await db.fetch_one(
        conn, QUERIES["intent_by_provider_order"], {"provider_order_id": provider_order_id}
    )
    return from_row(row) if row else None


async def find_by_reference(
    conn: psycopg.AsyncConnection, external_reference: str
) -> Intent | None:
    """The intent that sent this `external_reference` to Mercado Pago."""
    row = await db.fetch_one(
        conn, QUERIES["intent_by_reference"], {"external_reference": external_reference}
    )
    return from_row(row) if row else None


async def link_provider_order(
    conn: psycopg.AsyncConnection, intent_id: uuid.UUID, provider_order_id: str
) -> bool:
    """Link the intent to the order Mercado Pago created for it; False when linked to another."""
    linked = await db.fetch_one(
        conn,
        QUERIES["set_provider_order"],
        {"id": intent_id, "provider_order_id": provider_order_id},
    )
    return linked is not None


async def defer_resolution(
    conn: psycopg.AsyncConnection, intent: dict[str, Any], *, delay: int = 0
) -> int | None:
    """The resolution job of an unresolved intent, at most one waiting (`queueing_lock`), never
    beside another job of its order (`lock`)."""
    return await queue.defer(
        conn,
        RESOLVE_TASK,
        queueing_lock=f"resolve-intent-{intent['id']}",
        lock=f"order-{intent['order_id']}",
        schedule_in={"seconds": delay} if delay else None,
        intent_id=str(intent["id"]),
    )


def start_grace_seconds() -> int:
    """How long a start may go without recording Mercado Pago's answer before it is resolved by
    the clean-up: the call's deadline, plus a margin."""
    return int(get_settings().mp_timeout_seconds) + 1 + START_MARGIN_SECONDS
