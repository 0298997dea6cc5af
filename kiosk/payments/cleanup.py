"""Stale payment intents: charges Mercado Pago must have ended by now, settled from its truth.

A charge still `created` or `at_terminal` in the kiosk well past its expiration means its final
notification was lost or never processed. Every KIOSK_CLEANUP_PAYMENT_INTENTS_CRON tick
(`payments.cleanup_payment_intents` in periodic.py) lists them and defers one
`payments.check_stale_intent` job per intent with the order's `lock`, so the check never runs
beside the notification job (or another check) of the same order, and a provider error on one
intent fails that job only. The next tick is the retry.

A check reads the charge at Mercado Pago, cancels it when it is still `created`, reads it again
(a cancel never wins over `processed`) and records the answer with `intents.apply`, the same
forward-only update the notification job uses: `processed` makes the order paid and defers its
receipt and notify jobs in that transaction. A charge on the terminal cannot be cancelled by API:
it is recorded as it is and read again at the next tick.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from kiosk import db, queue
from kiosk.payments import intents
from kiosk.payments import mercadopago as mp
from kiosk.settings import get_settings, value_or_default
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.payments")
logger = logging.getLogger("kiosk.payments")

CHECK_TASK = "payments.check_stale_intent"
# Beyond the charge's own expiration: Mercado Pago's lag in expiring it, and time for a start
# still waiting for Mercado Pago's answer (bounded by KIOSK_MP_TIMEOUT_SECONDS) to record it.
MARGIN_SECONDS = 60
BATCH = 500


@dataclass(frozen=True)
class Checked:
    intent_id: uuid.UUID
    status: str | None  # the intent's status afterwards; None when there is no such intent
    note: str


def cron() -> str:
    """The periodic task's cron (the default when a tool imports tasks.app unconfigured)."""
    return value_or_default("cleanup_payment_intents_cron")


def ttl_seconds() -> int:
    """How long an open intent may stay unchanged before it is checked."""
    settings = get_settings()
    expiration = mp.parse_duration(settings.payment_expiration)
    return expiration + int(settings.mp_timeout_seconds) + 1 + MARGIN_SECONDS


async def defer_checks(limit: int = BATCH) -> int:
    """Defer a check of every stale intent (at most `limit`); return how many were deferred.

    An intent whose check is still waiting gets no second job (`queueing_lock`).
    """
    deferred = 0
    async with db.transaction() as conn:
        stale = await db.fetch_all(
            conn, QUERIES["stale_intents"], {"ttl": ttl_seconds(), "limit": limit}
        )
        for row in stale:
            job_id = await queue.defer(
                conn, CHECK_TASK,
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
    if row["status"] not in intents.OPEN:
        return Checked(intent_id, row["status"], "already settled")
    provider_order_id = row["provider_order_id"]
    if provider_order_id is None:
        return await _abandon(intent_id)
    async with mp.MercadoPago.from_settings() as client:
        try:
            answer = await client.get_order(provider_order_id)
            if answer.status == "created":
                try:
                    await client.cancel_order(provider_order_id, f"kiosk-cancel-{intent_id}")
                except mp.MPConflict:
                    pass  # taken by the terminal (or finished) meanwhile: the read below says which
                answer = await client.get_order(provider_order_id)
        except mp.MPNotFound:
            logger.error("payment intent %s: Mercado Pago does not know its order %s",
                         intent_id, provider_order_id)
            return Checked(intent_id, row["status"], "unknown to Mercado Pago")
    async with db.transaction() as conn:
        intent = await intents.apply(conn, intent_id, answer)
    logger.info("stale payment intent %s: Mercado Pago says %s", intent_id, answer.status)
    return Checked(intent_id, intent.status, f"Mercado Pago says {answer.status}")


async def _abandon(intent_id: uuid.UUID) -> Checked:
    """A start that never recorded Mercado Pago's answer (the process died during the call).

    Without the provider order id nothing can be read, so the attempt becomes `error` with
    `outcome_unknown`: the terminal is free again and the order can expire. A charge it may have
    made has expired on its terminal by now (its expiration is shorter than the TTL) unless the
    customer paid it, which the kiosk cannot see (no intent knows that Mercado Pago order, so
    its notifications are `ignored`): the warning tells an operator where to look.
    """
    params = {"id": intent_id, "ttl": ttl_seconds(),
              "last_error": "abandoned: the start of this charge never recorded an answer"}
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["abandon_intent"], params)
        if row is None:
            row = await db.fetch_one(conn, QUERIES["get_intent"], {"id": intent_id})
            assert row is not None
            return Checked(intent_id, row["status"], "not stale (yet): left for the next tick")
    logger.warning(
        "payment intent %s (order %s): abandoned, its start never recorded Mercado Pago's answer; "
        "if the customer says they paid, look up external_reference %s at Mercado Pago",
        intent_id, row["order_id"], row["external_reference"],
    )
    return Checked(intent_id, row["status"], "abandoned")
