"""Payment intents, the kiosk's record of its charges: one intent is one charge attempt and maps
to one Mercado Pago order.

This module owns the `payment_intents` rows (`Intent`, read with psycopg's `class_row`) and their
queries, behind one function each; what a charge means for its order
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
    """A `payment_intents` row (read with `class_row`: its columns are these fields)."""

    id: uuid.UUID
    order_id: uuid.UUID
    terminal_id: str
    provider_order_id: str | None
    provider_payment_id: str | None
    idempotency_key: str
    external_reference: str
    amount_cents: int
    status: str
    status_detail: str | None
    outcome_unknown: bool
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    refund_status: str | None
    refund_idempotency_key: str | None
    refund_reason: str | None
    refund_requested_at: dt.datetime | None
    refunded_at: dt.datetime | None
    refund_last_error: str | None


async def _one(conn: psycopg.AsyncConnection, query: str, params: dict[str, Any]) -> Intent | None:
    return await db.fetch_one_as(conn, Intent, QUERIES[query], params)


async def lock_order(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> None:
    """Lock the intent's order row, as every change of a charge does first (the order, then the
    intent: one lock order in every path); NotFound when there is none."""
    if await db.fetch_one(conn, QUERIES["lock_order_of_intent"], {"order_id": order_id}) is None:
        raise NotFound(f"order {order_id} not found")


async def find(conn: psycopg.AsyncConnection, intent_id: uuid.UUID) -> Intent | None:
    return await _one(conn, "get_intent", {"id": intent_id})


async def get(conn: psycopg.AsyncConnection, intent_id: uuid.UUID) -> Intent:
    """The intent; NotFound when there is none."""
    intent = await find(conn, intent_id)
    if intent is None:
        raise NotFound(f"payment intent {intent_id} not found")
    return intent


async def lock(conn: psycopg.AsyncConnection, intent_id: uuid.UUID) -> Intent:
    """The intent, locked: after its order (`lock_order`), never before. NotFound when there is
    none."""
    intent = await _one(conn, "lock_intent", {"id": intent_id})
    if intent is None:
        raise NotFound(f"payment intent {intent_id} not found")
    return intent


async def list_for_order(order_id: uuid.UUID) -> list[Intent]:
    async with db.transaction() as conn:
        return await db.fetch_all_as(
            conn, Intent, QUERIES["intents_of_order"], {"order_id": order_id}
        )


async def find_by_provider_order(
    conn: psycopg.AsyncConnection, provider_order_id: str
) -> Intent | None:
    return await _one(conn, "intent_by_provider_order", {"provider_order_id": provider_order_id})


async def find_by_reference(
    conn: psycopg.AsyncConnection, external_reference: str
) -> Intent | None:
    """The intent that sent this `external_reference` to Mercado Pago."""
    return await _one(conn, "intent_by_reference", {"external_reference": external_reference})


async def open_of_order(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> Intent | None:
    """The order's charge still open (created, on the terminal, or unresolved), if any."""
    return await _one(conn, "open_intent_of_order", {"order_id": order_id})


async def open_on_terminal(conn: psycopg.AsyncConnection, terminal_id: str) -> Intent | None:
    return await _one(conn, "open_intent_on_terminal", {"terminal_id": terminal_id})


async def retryable(
    conn: psycopg.AsyncConnection, order_id: uuid.UUID, terminal_id: str
) -> Intent | None:
    """The latest attempt on this order and terminal whose outcome is unknown (its key is sent
    again), if any."""
    return await _one(conn, "retryable_intent", {"order_id": order_id, "terminal_id": terminal_id})


async def insert(
    conn: psycopg.AsyncConnection, order_id: uuid.UUID, terminal_id: str, amount_cents: int
) -> Intent:
    """A new charge attempt, with its own idempotency key and `external_reference`."""
    intent_id = uuid.uuid4()
    params = {
        "id": intent_id,
        "order_id": order_id,
        "terminal_id": terminal_id,
        "idempotency_key": f"kiosk-charge-{intent_id}",
        "external_reference": f"kiosk-{intent_id.hex}",
        "amount_cents": amount_cents,
    }
    (intent,) = await db.fetch_all_as(conn, Intent, QUERIES["insert_intent"], params)
    return intent


async def reopen(conn: psycopg.AsyncConnection, intent_id: uuid.UUID) -> Intent | None:
    """An attempt whose outcome is unknown, `created` again to re-send its key; None when it is
    no such attempt any more."""
    return await _one(conn, "reopen_intent", {"id": intent_id})


async def link_provider_order(
    conn: psycopg.AsyncConnection, intent_id: uuid.UUID, provider_order_id: str
) -> Intent | None:
    """Link the intent to the order Mercado Pago created for it; None when it is linked to
    another."""
    return await _one(
        conn, "set_provider_order", {"id": intent_id, "provider_order_id": provider_order_id}
    )


async def fail(conn: psycopg.AsyncConnection, intent_id: uuid.UUID, error: str) -> None:
    """The provider call failed and created nothing: `error` (a `created` start only)."""
    await conn.execute(
        QUERIES["fail_intent"],
        {"id": intent_id, "last_error": error[:500], "outcome_unknown": False},
    )


async def mark_unresolved(
    conn: psycopg.AsyncConnection, intent_id: uuid.UUID, error: str
) -> Intent | None:
    """The create's answer was lost: `unresolved` (a `created` start without a provider order
    only; None otherwise). The caller defers the resolution in the same transaction."""
    return await _one(conn, "mark_unresolved", {"id": intent_id, "last_error": error[:500]})


async def fail_resolution(
    conn: psycopg.AsyncConnection, intent_id: uuid.UUID, error: str
) -> Intent | None:
    """Mercado Pago refused the re-sent create: `failed` (an unresolved one only)."""
    return await _one(conn, "fail_resolution", {"id": intent_id, "last_error": error[:500]})


async def advance(
    conn: psycopg.AsyncConnection,
    intent_id: uuid.UUID,
    status: str,
    status_detail: str | None,
    provider_payment_id: str | None,
) -> Intent | None:
    """Move to Mercado Pago's status, forward only; None when that would go back."""
    return await _one(
        conn,
        "advance_intent",
        {
            "id": intent_id,
            "status": status,
            "status_detail": status_detail,
            "provider_payment_id": provider_payment_id,
        },
    )


async def stale(conn: psycopg.AsyncConnection, ttl: int, limit: int) -> list[Intent]:
    """Open charges unchanged for `ttl` seconds, oldest change first."""
    return await db.fetch_all_as(
        conn, Intent, QUERIES["stale_intents"], {"ttl": ttl, "limit": limit}
    )


async def orphan_starts(conn: psycopg.AsyncConnection, age: int, limit: int) -> list[Intent]:
    """Starts that recorded no answer after `age` seconds, and unresolved charges as old."""
    return await db.fetch_all_as(
        conn, Intent, QUERIES["orphan_starts"], {"age": age, "limit": limit}
    )


async def unresolve_orphan(
    conn: psycopg.AsyncConnection, intent_id: uuid.UUID, age: int
) -> Intent | None:
    """An orphan start becomes `unresolved` (None when it is no orphan start any more)."""
    return await _one(conn, "unresolve_orphan", {"id": intent_id, "age": age})


async def defer_resolution(
    conn: psycopg.AsyncConnection, intent: Intent, *, delay: int = 0
) -> int | None:
    """The resolution job of an unresolved intent, at most one waiting (`queueing_lock`), never
    beside another job of its order (`lock`)."""
    return await queue.defer(
        conn,
        RESOLVE_TASK,
        queueing_lock=f"resolve-intent-{intent.id}",
        lock=f"order-{intent.order_id}",
        schedule_in={"seconds": delay} if delay else None,
        intent_id=str(intent.id),
    )


def start_grace_seconds() -> int:
    """How long a start may go without recording Mercado Pago's answer before it is resolved by
    the clean-up: the call's deadline, plus a margin."""
    return int(get_settings().mp_timeout_seconds) + 1 + START_MARGIN_SECONDS
