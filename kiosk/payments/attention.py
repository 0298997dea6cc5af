"""Payments needing an operator: charges whose outcome is still unknown after a few minutes, and
refunds that failed or are stuck. Listed by `GET /admin/payments/attention` and the dashboard's
Attention page, with the two actions an operator needs: resolve now (re-send the create's
idempotency key) and retry a refund (the same refund key). Each action is audited in its own
transaction, with its job deferred there too.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg

from kiosk import audit, db
from kiosk.errors import Conflict
from kiosk.payments import intents, refunds
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.payments")
LIMIT = 500


@dataclass(frozen=True)
class Item:
    """A payment needing an operator: a row of the `attention` query (the charge, its order's
    state, and `kind`: `unresolved` or `refund`)."""

    id: uuid.UUID
    order_id: uuid.UUID
    terminal_id: str
    provider_order_id: str | None
    status: str
    last_error: str | None
    amount_cents: int
    external_reference: str
    created_at: dt.datetime
    updated_at: dt.datetime
    refund_status: str | None
    refund_reason: str | None
    refund_requested_at: dt.datetime | None
    refund_last_error: str | None
    order_status: str
    closing_status: str | None
    kind: str


async def list_attention(limit: int = LIMIT) -> list[Item]:
    """Unresolved charges (and starts that never recorded an answer) older than
    KIOSK_PAYMENT_ATTENTION_AFTER_SECONDS, failed refunds and refunds pending that long; oldest
    first."""
    async with db.transaction() as conn:
        return await _items(conn, limit)


async def count_by_kind(conn: psycopg.AsyncConnection, limit: int = 10_000) -> dict[str, int]:
    """How many payments need an operator, by kind (`unresolved`, `refund`), for /metrics."""
    counts = {"unresolved": 0, "refund": 0}
    for item in await _items(conn, limit):
        counts[item.kind] += 1
    return counts


async def _items(conn: psycopg.AsyncConnection, limit: int) -> list[Item]:
    params = {"age": get_settings().payment_attention_after_seconds, "limit": limit}
    return await db.fetch_all_as(conn, Item, QUERIES["attention"], params)


@dataclass(frozen=True)
class Resolution:
    """What `resolve_now` did: the resolution job deferred, or one already waiting."""

    id: uuid.UUID
    status: str
    job_id: int | None
    result: str  # `deferred` or `already waiting`


@dataclass(frozen=True)
class RefundRetry:
    id: uuid.UUID
    refund_status: str | None
    result: str  # `deferred`


async def resolve_now(intent_id: uuid.UUID, by: audit.Operator) -> Resolution:
    """Defer the resolution of an unresolved charge now (a start that never recorded its answer
    becomes unresolved first, once past the start's deadline). NotFound, or Conflict when there
    is nothing to resolve."""
    async with db.transaction() as conn:
        intent = await intents.get(conn, intent_id)
        await intents.lock_order(conn, intent.order_id)
        if intent.status == "created" and intent.provider_order_id is None:
            orphan = await intents.unresolve_orphan(conn, intent_id, intents.start_grace_seconds())
            if orphan is None:
                raise Conflict(
                    f"payment intent {intent_id} is still being started; try again in a minute"
                )
            intent = orphan
        if intent.status != "unresolved":
            raise Conflict(f"payment intent {intent_id} is {intent.status}: nothing to resolve")
        job_id = await intents.defer_resolution(conn, intent)
        await audit.record_by(
            conn,
            by,
            "payment.resolve",
            f"payment_intent:{intent_id}",
            {"order_id": str(intent.order_id), "job_id": job_id},
        )
    return Resolution(intent_id, intent.status, job_id, "deferred" if job_id else "already waiting")


async def retry_refund(intent_id: uuid.UUID, by: audit.Operator) -> RefundRetry:
    """Ask Mercado Pago again for a failed refund, with the same idempotency key."""
    intent = await refunds.retry(intent_id, by)
    return RefundRetry(intent_id, intent.refund_status, "deferred")
