"""Stale payment intents: charges Mercado Pago must have ended by now, settled from its truth.

A charge still `created` or `at_terminal` in the kiosk well past its expiration means its final
notification was lost or never processed. Every KIOSK_CLEANUP_PAYMENT_INTENTS_CRON tick
(`payments.cleanup_payment_intents` in periodic.py) lists them and defers one
`payments.check_stale_intent` job per intent with the order's `lock`, so the check never runs
beside the notification job (or another check) of the same order, and a provider error on one
intent fails that job only. The next tick is the retry.

A check reads the charge at Mercado Pago, cancels it when it is still `created`, reads it again
(a cancel never wins over `processed`) and records the answer with `lifecycle.apply`, the same
forward-only update the notification job uses: `processed` makes the order paid and defers its
receipt and notify jobs in that transaction. A charge on the terminal cannot be cancelled by API:
it is recorded as it is and read again at the next tick.

Nothing that may hold money is forgotten: a start that never recorded Mercado Pago's answer (its
process died between writing the intent and the call, or during it) becomes `unresolved`, and an
unresolved charge or a pending refund whose job gave up gets its job again, at each tick.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass

from kiosk import db, queue
from kiosk.orders import lifecycle
from kiosk.payments import intents, refunds
from kiosk.payments import mercadopago as mp
from kiosk.settings import get_settings, value_or_default
from kiosk.validators import parse_duration

# The intents' named queries (kiosk/payments/queries.sql), loaded once by their owner.
QUERIES = intents.QUERIES
logger = logging.getLogger("kiosk.payments")

CHECK_TASK = "payments.check_stale_intent"
# Beyond the charge's own expiration: Mercado Pago's lag in expiring it, and time for a start
# still waiting for Mercado Pago's answer (bounded by KIOSK_MP_TIMEOUT_SECONDS) to record it.
MARGIN_SECONDS = intents.START_MARGIN_SECONDS
BATCH = 500


@dataclass(frozen=True)
class Checked:
    intent_id: uuid.UUID
    status: str | None  # the intent's status afterwards; None when there is no such intent
    note: str


def cron() -> str:
    """The periodic task's cron (the default when a tool imports tasks.app unconfigured)."""
    cron: str = value_or_default("cleanup_payment_intents_cron")
    return cron


start_grace_seconds = intents.start_grace_seconds


def ttl_seconds() -> int:
    """How long an open intent may stay unchanged before it is checked."""
    settings = get_settings()
    expiration = parse_duration(settings.payment_expiration)
    return expiration + int(settings.mp_timeout_seconds) + 1 + MARGIN_SECONDS


async def defer_checks(limit: int = BATCH) -> int:
    """Defer a check of every stale intent (at most `limit`); return how many were deferred.

    An intent whose check is still waiting gets no second job (`queueing_lock`). Starts that
    never recorded an answer become `unresolved`; they, unresolved charges and pending refunds
    whose jobs gave up get their resolution or refund job again, in this transaction.
    """
    deferred = 0
    async with db.transaction() as conn:
        age = start_grace_seconds()
        for row in await db.fetch_all(conn, QUERIES["orphan_starts"], {"age": age, "limit": limit}):
            if row["status"] == "created":
                unresolved = await db.fetch_one(
                    conn, QUERIES["unresolve_orphan"], {"id": row["id"], "age": age}
                )
                if unresolved is None:
                    continue
                row = unresolved
                logger.warning(
                    "payment intent %s: its start never recorded Mercado Pago's answer; "
                    "resolving it with its idempotency key",
                    row["id"],
                )
            deferred += await intents.defer_resolution(conn, row) is not None
        for row in await db.fetch_all(conn, QUERIES["stuck_refunds"], {"age": age, "limit": limit}):
            deferred += await refunds.defer(conn, row) is not None
        stale = await db.fetch_all(
            conn, QUERIES["stale_intents"], {"ttl": ttl_seconds(), "limit": limit}
        )
        for row in stale:
            job_id = await queue.defer(
                conn,
                CHECK_TASK,
                queueing_lock=f"stale-intent-{row['id']}",
                lock=f"order-{row['order_id']}",
                intent_id=str(row["id"]),
            )
            deferred += job_id is not None
    if stale:
        logger.info("%d stale payment intents, %d checks deferred", len(stale), deferred)
    return deferred


async def check(intent_id: uuid.UUID) -> Checked:
    """Settle one stale intent from Mercado Pago's answer. Idempotent.

    Provider errors other than 404 propagate (the job fails; the next tick checks again).
    """
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["get_intent"], {"id": intent_id})
    if row is None:
        return Checked(intent_id, None, "no such payment intent")
    if row["status"] not in ("created", "at_terminal"):
        return Checked(intent_id, row["status"], "already settled")
    provider_order_id = row["provider_order_id"]
    if provider_order_id is None:
        return await _unresolve(intent_id)
    async with mp.MercadoPago.from_settings() as client:
        try:
            answer = await client.get_order(provider_order_id)
            if answer.status == "created":
                # MPConflict: the terminal took it (or it ended) meanwhile; the read below says.
                with contextlib.suppress(mp.MPConflict):
                    await client.cancel_order(provider_order_id, f"kiosk-cancel-{intent_id}")
                answer = await client.get_order(provider_order_id)
        except mp.MPNotFound:
            logger.error(
                "payment intent %s: Mercado Pago does not know its order %s",
                intent_id,
                provider_order_id,
            )
            return Checked(intent_id, row["status"], "unknown to Mercado Pago")
    async with db.transaction() as conn:
        intent = await lifecycle.apply(conn, intent_id, answer)
    logger.info("stale payment intent %s: Mercado Pago says %s", intent_id, answer.status)
    return Checked(intent_id, intent.status, f"Mercado Pago says {answer.status}")


async def _unresolve(intent_id: uuid.UUID) -> Checked:
    """A start that never recorded Mercado Pago's answer (its process died during the call): the
    charge may exist, so it becomes `unresolved` and its resolution job re-sends the same
    idempotency key, in this transaction."""
    async with db.transaction() as conn:
        row = await db.fetch_one(
            conn, QUERIES["unresolve_orphan"], {"id": intent_id, "age": start_grace_seconds()}
        )
        if row is None:
            row = await intents.get_row(conn, intent_id)
            return Checked(intent_id, row["status"], "not stale (yet): left for the next tick")
        await intents.defer_resolution(conn, row)
    logger.warning(
        "payment intent %s (order %s): its start never recorded Mercado Pago's answer; "
        "resolving it with its idempotency key",
        intent_id,
        row["order_id"],
    )
    return Checked(intent_id, row["status"], "unresolved: resolution deferred")
