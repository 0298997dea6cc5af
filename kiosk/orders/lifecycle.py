"""The order lifecycle around its charges: charge an order on a terminal, follow Mercado Pago's
status, settle (pay, refund) and close (cancel, expire) the order, resolve ambiguous creates.

One intent is one charge attempt and maps to one Mercado Pago order. Its row is committed
*before* Mercado Pago is called (so Mercado Pago never holds an order the kiosk does not know),
and no transaction stays open during the call. Every change that follows Mercado Pago goes
through `apply`, on a locked order, forward only; the order's own transitions and the follow-up
jobs of a payment happen in that same transaction.

Invariants (docs/payments.md, "Money and goods"):
- A charge that may exist at Mercado Pago is never forgotten: an ambiguous create (5xx, timeout,
  connection lost after sending) leaves the intent `unresolved` and defers its resolution job in
  the same transaction; the job re-sends the same idempotency key until Mercado Pago answers. A
  start whose process died before recording anything is found by the periodic clean-up.
- An unresolved charge counts as open: the order keeps its stock while it may take money.
- Money taken for an order that cannot be honoured (closed, or paid by another charge) is
  refunded (`kiosk.payments.refunds`); a closed order never becomes paid, a paid one is never
  refunded by the kiosk.

Direction (docs/architecture.md): orders -> payments. This module uses the intent store
(`kiosk.payments.intents`), the Mercado Pago client and refunds; nothing in kiosk.payments imports
kiosk.orders.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import db
from kiosk.errors import Conflict, NotFound, ProviderFailed
from kiosk.notifications import deliveries
from kiosk.orders import store as orders
from kiosk.payments import intents, refunds
from kiosk.payments import mercadopago as mp
from kiosk.payments.intents import (
    RESOLVE_DELAY_SECONDS,
    UNPAID_FINAL,
    Intent,
    defer_resolution,
    from_row,
)
from kiosk.settings import get_settings
from kiosk.validators import MIN_EXPIRATION, parse_duration

# The intents' named queries (kiosk/payments/queries.sql), loaded once by their owner.
QUERIES = intents.QUERIES
logger = logging.getLogger("kiosk.payments")


# -- charging ---------------------------------------------------------------------------------


async def create(order_id: uuid.UUID, terminal_id: str) -> Intent:
    """Charge the order on `terminal_id`: write the intent, ask Mercado Pago, record the answer.

    Conflict when the order is not payable or the terminal is busy. When Mercado Pago refused the
    charge or could not be reached at all, nothing was created: the intent is `error` and
    ProviderFailed (502) says so. When the answer was lost (5xx, timeout, connection dropped after
    sending) the charge may exist: the intent is returned `unresolved` and a job re-sends the same
    idempotency key until Mercado Pago answers, so the customer is never charged twice.
    """
    row, charge = await _start(order_id, terminal_id)
    key = row["idempotency_key"]
    try:
        async with mp.MercadoPago.from_settings() as client:
            answer = await client.create_order(charge, key)
    except mp.MPConflict as exc:
        await _fail(row["id"], str(exc))
        raise Conflict(
            f"terminal {terminal_id} is busy: Mercado Pago has another order queued on it"
        ) from None
    except mp.MPNotSent as exc:
        await _fail(row["id"], str(exc))
        raise ProviderFailed(
            f"{exc}; nothing was charged (payment intent {row['id']} is in error), try again"
        ) from None
    except mp.MPUnavailable as exc:
        return await unresolve(row["id"], str(exc))
    except mp.MPError as exc:
        await _fail(row["id"], str(exc))
        raise ProviderFailed(f"Mercado Pago refused the charge: {exc}") from None
    except BaseException:
        # Cancelled (shutdown) or a bug while the request may have been sent: resolve it later.
        await asyncio.shield(unresolve(row["id"], "interrupted while calling Mercado Pago"))
        raise
    return await record_created(row["id"], answer)


async def record_created(intent_id: uuid.UUID, answer: mp.MPOrder) -> Intent:
    """Link the intent to the Mercado Pago order created for it and follow its status; a charge
    the order no longer wants (it is being closed, or is closed) is cancelled at once."""
    async with db.transaction() as conn:
        linked = await db.fetch_one(
            conn, QUERIES["set_provider_order"], {"id": intent_id, "provider_order_id": answer.id}
        )
        if linked is None:
            logger.error(
                "payment intent %s: Mercado Pago answered with order %s, but another order "
                "is linked to it",
                intent_id,
                answer.id,
            )
            row = await intents.get_row(conn, intent_id)
            return from_row(row)
        intent = await apply(conn, intent_id, answer)
    return await cancel_if_unwanted(intent)


async def unresolve(intent_id: uuid.UUID, error: str) -> Intent:
    """The create's outcome is unknown: `unresolved`, with its resolution job deferred in the same
    transaction. An intent no longer `created` without a provider order is returned as it is."""
    async with db.transaction() as conn:
        row = await db.fetch_one(
            conn, QUERIES["mark_unresolved"], {"id": intent_id, "last_error": error[:500]}
        )
        if row is not None:
            await defer_resolution(conn, row, delay=RESOLVE_DELAY_SECONDS)
        else:
            row = await intents.get_row(conn, intent_id)
    if row["status"] == "unresolved":
        logger.warning(
            "payment intent %s: outcome unknown (%s); resolving with the same key", intent_id, error
        )
    return from_row(row)


async def _start(order_id: uuid.UUID, terminal_id: str) -> tuple[dict[str, Any], mp.Charge]:
    async with db.transaction() as conn:
        order = await orders.lock(conn, order_id)
        if order.status != "pending_payment":
            raise Conflict(f"order is {order.status}, not payable")
        if order.closing_status:
            raise Conflict(f"order is being {order.closing_status}, not payable")
        if order.total_cents <= 0:
            raise Conflict("order total is zero: nothing to charge")
        remaining = int((order.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
        if remaining < MIN_EXPIRATION:
            raise Conflict("order expires in less than 30 seconds: create a new order")
        params = {"order_id": order_id, "terminal_id": terminal_id}
        current = await db.fetch_one(conn, QUERIES["open_intent_of_order"], params)
        if current and current["status"] == "unresolved":
            raise Conflict(
                f"payment intent {current['id']} on terminal {current['terminal_id']} is being "
                "resolved with Mercado Pago (its create's answer was lost); try again in a moment"
            )
        if (
            current
            and current["provider_order_id"] is None
            and current["terminal_id"] == terminal_id
        ):
            # A start that never recorded Mercado Pago's answer (the database went away during
            # the call, or the call is still running): ask again with the same idempotency key,
            # so Mercado Pago answers with the charge it may hold instead of queueing another.
            return current, _charge(current, order_id, terminal_id, remaining)
        if current:
            raise Conflict(
                f"order already has an open payment intent {current['id']} on terminal "
                f"{current['terminal_id']} ({current['status']})"
            )
        if await db.fetch_one(conn, QUERIES["open_intent_on_terminal"], params):
            raise Conflict(f"terminal {terminal_id} is busy with another charge")
        row = await db.fetch_one(conn, QUERIES["retryable_intent"], params)
        try:
            async with conn.transaction():
                if row:
                    row = await db.fetch_one(conn, QUERIES["reopen_intent"], {"id": row["id"]})
                else:
                    intent_id = uuid.uuid4()
                    row = await db.fetch_one(
                        conn,
                        QUERIES["insert_intent"],
                        {
                            **params,
                            "id": intent_id,
                            "idempotency_key": f"kiosk-charge-{intent_id}",
                            "external_reference": f"kiosk-{intent_id.hex}",
                            "amount_cents": order.total_cents,
                        },
                    )
        except psycopg.errors.UniqueViolation:
            # Another order took the terminal between the check and the insert.
            raise Conflict(f"terminal {terminal_id} is busy with another charge") from None
    if row is None:  # the order is locked: the intent written or reopened above is there
        raise Conflict(
            f"payment intent for order {order_id} changed while it was being started; try again"
        )
    return row, _charge(row, order_id, terminal_id, remaining)


def _charge(
    row: dict[str, Any], order_id: uuid.UUID, terminal_id: str, remaining: int
) -> mp.Charge:
    expiration = min(parse_duration(get_settings().payment_expiration), remaining)
    return mp.Charge(
        external_reference=row["external_reference"],
        amount_cents=row["amount_cents"],
        terminal_id=terminal_id,
        expiration_seconds=expiration,
        description=f"Kiosk order {str(order_id)[:8]}",
    )


async def _fail(intent_id: uuid.UUID, error: str) -> None:
    """Nothing was created at Mercado Pago: `error`. An order asked to close while this start was
    running (it had to wait for it) closes now, when nothing else is open on it."""
    async with db.transaction() as conn:
        row = await intents.get_row(conn, intent_id)
        order = await orders.lock(conn, row["order_id"])
        await conn.execute(
            QUERIES["fail_intent"],
            {"id": intent_id, "last_error": error[:500], "outcome_unknown": False},
        )
        if (
            order.status == "pending_payment"
            and order.closing_status
            and not await db.fetch_one(
                conn, QUERIES["open_intent_of_order"], {"order_id": order.id}
            )
        ):
            await orders.close(conn, order.id, order.closing_status)
    logger.warning("payment intent %s: error: %s", intent_id, error)


# -- following Mercado Pago ---------------------------------------------------------------------


async def apply(conn: psycopg.AsyncConnection, intent_id: uuid.UUID, answer: mp.MPOrder) -> Intent:
    """Record Mercado Pago's view of the intent's order, and what it means for the kiosk order.

    Idempotent and monotonic: a status older than the stored one changes nothing, and the order
    effects below are safe to repeat. Locks the order, then the intent (the order in every path).
    """
    row = await intents.get_row(conn, intent_id)
    order = await orders.lock(conn, row["order_id"])
    locked = await db.fetch_one(conn, QUERIES["lock_intent"], {"id": intent_id})
    if locked is None:
        raise NotFound(f"payment intent {intent_id} not found")
    row = locked
    theirs = answer.external_reference not in (None, row["external_reference"])
    if answer.id != row["provider_order_id"] or theirs:
        logger.error(
            "payment intent %s: Mercado Pago order %s is not its order", intent_id, answer.id
        )
        return from_row(row)
    if answer.status not in mp.ORDER_STATUSES:
        logger.warning(
            "payment intent %s: unknown Mercado Pago status %r", intent_id, answer.status
        )
        return from_row(row)
    advanced = await db.fetch_one(
        conn,
        QUERIES["advance_intent"],
        {
            "id": intent_id,
            "status": answer.status,
            "status_detail": answer.status_detail,
            "provider_payment_id": answer.payment_id,
        },
    )
    if advanced:
        logger.info("payment intent %s: %s -> %s", intent_id, row["status"], advanced["status"])
        row = advanced
    await _settle_order(conn, order, row)
    return from_row(row)


async def _settle_order(
    conn: psycopg.AsyncConnection, order: orders.LockedOrder, intent: dict[str, Any]
) -> None:
    order_id, status = order.id, intent["status"]
    if status == "processed":
        if order.status == "pending_payment" and order.stock_released_at is None:
            if await orders.mark_paid(conn, order_id, intent["id"]):
                await deliveries.plan_paid(
                    conn, order_id, order.customer_email, lambda: orders.read(conn, order_id)
                )
        elif order.paid_intent_id != intent["id"]:
            # Money taken that the kiosk cannot honour: give it back (once), the order stays.
            if order.status in ("paid", "refunded"):
                reason = f"order already paid by payment intent {order.paid_intent_id}"
            else:
                reason = f"order {order.status} before the payment"
            await refunds.plan(conn, intent, reason)
    elif status == "refunded":
        if intent["refund_status"] in ("pending", "failed"):
            await refunds.done(conn, intent)
        else:
            await orders.mark_refunded(conn, order_id, intent["id"])
    elif (
        status in UNPAID_FINAL
        and order.status == "pending_payment"
        and order.closing_status
        and not await db.fetch_one(conn, QUERIES["open_intent_of_order"], {"order_id": order_id})
    ):
        await orders.close(conn, order_id, order.closing_status)


# -- closing orders -----------------------------------------------------------------------------


async def close_order(order_id: uuid.UUID, status: str = "canceled") -> orders.Order:
    """Cancel (or expire) an order, releasing its stock once.

    With no open charge the order closes now. A charge still `created` is cancelled at Mercado
    Pago; a charge already on the terminal cannot be, so the order closes when the terminal
    reports the charge ended unpaid. A charge being started or unresolved (it may exist) keeps the
    order open too: its start or resolution cancels it and closes the order. Stock is released
    only when no charge can take money any more. Mercado Pago is re-read after asking: when it
    reports the payment `processed`, money was taken and the order ends `paid` (Conflict).
    """
    if status not in orders.CLOSED:
        raise ValueError(f"an order is closed as canceled or expired, not {status!r}")
    async with db.transaction() as conn:
        order = await orders.lock(conn, order_id)
        if order.status in ("canceled", "expired"):
            return await orders.read(conn, order_id)
        if order.status in ("paid", "refunded"):
            raise Conflict(f"order is {order.status}; it cannot be {status}")
        if status == "expired" and order.expires_at > dt.datetime.now(dt.UTC):
            raise Conflict("order has not reached its expires_at")
        current = await db.fetch_one(conn, QUERIES["open_intent_of_order"], {"order_id": order_id})
        if current is None:
            await orders.close(conn, order_id, status)
            return await orders.read(conn, order_id)
        await orders.request_close(conn, order_id, status)
        if current["provider_order_id"] is None:
            # Being started, or unresolved: the start (or the resolution job) records Mercado
            # Pago's answer, cancels the charge when still possible and closes the order.
            return await orders.read(conn, order_id)
    answer = await _cancel_or_read(current)
    if answer is not None:
        async with db.transaction() as conn:
            await apply(conn, current["id"], answer)
    order_now = await orders.get(order_id)
    if order_now.status in ("paid", "refunded"):
        raise Conflict(
            "the payment was processed on the terminal before the order could be "
            f"{status}: the order is {order_now.status}"
        )
    return order_now


async def _cancel_or_read(intent: dict[str, Any]) -> mp.MPOrder | None:
    """Cancel a `created` charge at Mercado Pago, or read where it is; None when unreachable
    (the charge's own notifications, or the stale-intent check, settle it later)."""
    provider_order_id = intent["provider_order_id"]
    try:
        async with mp.MercadoPago.from_settings() as client:
            if intent["status"] == "created":
                try:
                    return await client.cancel_order(
                        provider_order_id, f"kiosk-cancel-{intent['id']}"
                    )
                except mp.MPConflict:
                    pass  # already taken by the terminal (or finished): read it instead
            return await client.get_order(provider_order_id)
    except mp.MPError as exc:
        logger.warning(
            "payment intent %s: could not cancel or read %s: %s",
            intent["id"],
            provider_order_id,
            exc,
        )
        return None


async def cancel_if_unwanted(intent: Intent) -> Intent:
    """A charge that became known while its order was being closed (or after): cancel it at
    Mercado Pago when it is still `created`, re-read it and record the answer. Left as it is
    when the order still wants it or Mercado Pago cannot be reached (then the stale-intent check
    settles it, and money it took anyway is refunded)."""
    if intent.status not in ("created", "at_terminal") or intent.provider_order_id is None:
        return intent
    async with db.transaction() as conn:
        order = await orders.read(conn, intent.order_id)
    if order.status == "pending_payment" and order.closing_status is None:
        return intent
    answer = await _cancel_or_read(
        {"id": intent.id, "status": intent.status, "provider_order_id": intent.provider_order_id}
    )
    if answer is None:
        return intent
    async with db.transaction() as conn:
        return await apply(conn, intent.id, answer)


# -- resolving ambiguous creates ------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    intent_id: uuid.UUID
    status: str | None  # the intent's status afterwards; None when there is no such intent
    note: str


async def resolve(intent_id: uuid.UUID) -> Resolved:
    """Learn what became of an unresolved create. Idempotent; runs as `payments.resolve_intent`.

    Re-sends `POST /v1/orders` with the intent's own idempotency key (Mercado Pago answers with
    the order it created, or creates it now), or reads the order when its id became known
    meanwhile (a late answer, a notification). The intent then follows Mercado Pago's status; a
    definitive refusal (4xx) makes it `failed`. MPUnavailable propagates: the job is retried with
    backoff, and the periodic clean-up defers it again should it give up.
    """
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["get_intent"], {"id": intent_id})
        if row is None:
            return Resolved(intent_id, None, "no such payment intent")
        if row["status"] != "unresolved":
            return Resolved(intent_id, row["status"], "already resolved")
        order = await orders.read(conn, row["order_id"])
    if row["provider_order_id"] is not None:
        async with mp.MercadoPago.from_settings() as client:
            answer = await client.get_order(row["provider_order_id"])
        async with db.transaction() as conn:
            intent = await apply(conn, intent_id, answer)
        intent = await cancel_if_unwanted(intent)
        return Resolved(intent_id, intent.status, f"Mercado Pago says {answer.status}")
    remaining = int((order.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
    charge = _charge(row, order.id, row["terminal_id"], max(remaining, MIN_EXPIRATION))
    try:
        async with mp.MercadoPago.from_settings() as client:
            answer = await client.create_order(charge, row["idempotency_key"])
    except (mp.MPConflict, mp.MPRejected, mp.MPNotFound) as exc:
        # Refused for good: with this key, Mercado Pago holds no order (it would answer with it).
        async with db.transaction() as conn:
            locked = await orders.lock(conn, row["order_id"])
            failed = await db.fetch_one(
                conn, QUERIES["fail_resolution"], {"id": intent_id, "last_error": str(exc)[:500]}
            )
            if failed is None:
                current = await intents.get_row(conn, intent_id)
                return Resolved(intent_id, current["status"], "resolved meanwhile")
            await _settle_order(conn, locked, failed)
        logger.warning("payment intent %s: Mercado Pago refused the charge: %s", intent_id, exc)
        return Resolved(intent_id, "failed", f"refused: {exc}")
    intent = await record_created(intent_id, answer)
    logger.info(
        "payment intent %s resolved: Mercado Pago order %s is %s",
        intent_id,
        answer.id,
        answer.status,
    )
    return Resolved(intent_id, intent.status, f"Mercado Pago says {answer.status}")
