"""Refunds of money the kiosk cannot honour: a charge that ended `processed` for an order that is
closed (canceled or expired, its stock released) or already paid by another charge.

The decision is taken in the transaction that records the charge as processed (`plan`, called by
`orders.lifecycle.apply` on the locked order): a conditional update gives the charge its refund
once, with one idempotency key (`kiosk-refund-<intent id>`) kept across every retry, and defers the
`payments.refund_intent` job in that same transaction. The job calls
`POST /v1/orders/{id}/refund` with that key; an ambiguous answer (5xx, timeout, dropped
connection) is retried with the same key, so Mercado Pago refunds once however often it runs. A
definitive refusal leaves the refund `failed` for an operator (`GET /admin/payments/attention`).
The intent ends `refunded`; the order stays closed (a paid order is never refunded by the kiosk).
Each refund is written to the audit log, in the transaction that records it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import audit, db, queue
from kiosk.errors import Conflict
from kiosk.payments import intents
from kiosk.payments import mercadopago as mp
from kiosk.payments.intents import Intent
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.payments")
logger = logging.getLogger("kiosk.payments")

REFUND_TASK = "payments.refund_intent"
SYSTEM_ACTOR = "kiosk"


@dataclass(frozen=True)
class Refunded:
    intent_id: uuid.UUID
    refund_status: str | None  # afterwards; None when there is no such intent or no refund
    note: str


def idempotency_key(intent_id: uuid.UUID) -> str:
    return f"kiosk-refund-{intent_id}"


async def _one(conn: psycopg.AsyncConnection, query: str, params: dict[str, Any]) -> Intent | None:
    return await db.fetch_one_as(conn, Intent, QUERIES[query], params)


async def plan(conn: psycopg.AsyncConnection, intent: Intent, reason: str) -> bool:
    """Decide the refund of a processed charge, once, and defer its job in the caller's
    transaction (which holds the order's lock). False when it was decided before."""
    requested = await _one(
        conn,
        "request_refund",
        {"id": intent.id, "idempotency_key": idempotency_key(intent.id), "reason": reason},
    )
    if requested is None:
        return False
    await defer(conn, requested)
    logger.warning(
        "payment intent %s (order %s) took money the kiosk cannot honour (%s): refunding",
        intent.id,
        intent.order_id,
        reason,
    )
    return True


async def defer(conn: psycopg.AsyncConnection, intent: Intent) -> int | None:
    """The refund job of an intent, at most one waiting (`queueing_lock`), never beside another
    job of its order (`lock`)."""
    return await queue.defer(
        conn,
        REFUND_TASK,
        queueing_lock=f"refund-intent-{intent.id}",
        lock=f"order-{intent.order_id}",
        intent_id=str(intent.id),
    )


async def stuck(conn: psycopg.AsyncConnection, age: int, limit: int) -> list[Intent]:
    """Refunds still pending after `age` seconds (their job may have given up), oldest first."""
    return await db.fetch_all_as(
        conn, Intent, QUERIES["stuck_refunds"], {"age": age, "limit": limit}
    )


async def counts(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """Refunds by outcome (`pending`, `refunded`, `failed`), for /metrics."""
    rows = await db.fetch_all(conn, QUERIES["refund_counts"])
    return {row["refund_status"]: row["n"] for row in rows}


async def done(conn: psycopg.AsyncConnection, intent: Intent, *, actor: str = SYSTEM_ACTOR) -> bool:
    """Mercado Pago reports the charge refunded: record the refund once, with its audit entry."""
    refunded = await _one(conn, "finish_refund", {"id": intent.id})
    if refunded is None:
        return False
    await audit.record(
        conn,
        actor=actor,
        action="payment.refund",
        target=f"payment_intent:{refunded.id}",
        details={
            "order_id": str(refunded.order_id),
            "provider_order_id": refunded.provider_order_id,
            "amount_cents": refunded.amount_cents,
            "reason": refunded.refund_reason,
        },
    )
    logger.warning(
        "payment intent %s (order %s): refunded %d cents at Mercado Pago (%s)",
        refunded.id,
        refunded.order_id,
        refunded.amount_cents,
        refunded.refund_reason,
    )
    return True


async def refund(intent_id: uuid.UUID) -> Refunded:
    """Ask Mercado Pago to refund a charge whose refund is pending. Idempotent.

    MPUnavailable (the answer is unknown) propagates: the job is retried with the same key.
    """
    async with db.transaction() as conn:
        intent = await intents.find(conn, intent_id)
    if intent is None:
        return Refunded(intent_id, None, "no such payment intent")
    if intent.refund_status != "pending" or intent.refund_idempotency_key is None:
        return Refunded(intent_id, intent.refund_status, "no refund pending")
    provider_order_id = intent.provider_order_id
    if provider_order_id is None:  # the refund's query plans processed charges only: linked
        return Refunded(intent_id, intent.refund_status, "no Mercado Pago order to refund")
    async with mp.MercadoPago.from_settings() as client:
        try:
            answer = await client.refund_order(provider_order_id, intent.refund_idempotency_key)
        except (mp.MPConflict, mp.MPNotFound, mp.MPRejected) as exc:
            # Refused. Refunded already (through another channel)? Then it is done all the same.
            answer = await client.get_order(provider_order_id)
            if answer.status != "refunded":
                return await _fail(intent_id, str(exc))
    async with db.transaction() as conn:
        await record(conn, intent_id, answer)
        after = await intents.get(conn, intent_id)
    return Refunded(intent_id, after.refund_status, f"Mercado Pago says {answer.status}")


async def record(
    conn: psycopg.AsyncConnection,
    intent_id: uuid.UUID,
    answer: mp.MPOrder,
    *,
    actor: str = SYSTEM_ACTOR,
) -> None:
    """Record Mercado Pago's answer to a refund, on the locked order: the intent moves
    processed -> refunded and the refund is done. The order is left as it is (closed, or paid by
    another charge). NotFound when there is no such intent."""
    intent = await intents.get(conn, intent_id)
    await intents.lock_order(conn, intent.order_id)
    intent = await intents.lock(conn, intent_id)
    if answer.id != intent.provider_order_id or answer.status != "refunded":
        logger.error(
            "payment intent %s: refund answered %s %s", intent_id, answer.id, answer.status
        )
        return
    await intents.advance(conn, intent_id, "refunded", answer.status_detail, answer.payment_id)
    await done(conn, intent, actor=actor)


async def _fail(intent_id: uuid.UUID, error: str) -> Refunded:
    async with db.transaction() as conn:
        failed = await _one(conn, "fail_refund", {"id": intent_id, "last_error": error[:500]})
    logger.error("payment intent %s: Mercado Pago refused the refund: %s", intent_id, error)
    return Refunded(intent_id, failed.refund_status if failed else None, f"refund refused: {error}")


async def retry(intent_id: uuid.UUID, by: audit.Operator) -> Intent:
    """An operator asks for a failed refund again, with the same idempotency key: the job is
    deferred in the transaction that records the request and its audit entry. NotFound without
    such an intent, Conflict when its refund has not failed."""
    async with db.transaction() as conn:
        intent = await intents.get(conn, intent_id)
        await intents.lock_order(conn, intent.order_id)
        again = await _one(conn, "retry_refund", {"id": intent_id})
        if again is None:
            raise Conflict(
                f"payment intent {intent_id} has no failed refund "
                f"(refund: {intent.refund_status or 'none'})"
            )
        job_id = await defer(conn, again)
        await audit.record_by(
            conn,
            by,
            "payment.refund_retry",
            f"payment_intent:{intent_id}",
            {"order_id": str(again.order_id), "job_id": job_id},
        )
        return again
