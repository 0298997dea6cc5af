"""Payment intents: charge an order on a terminal, follow Mercado Pago's status, close orders.

One intent is one charge attempt and maps to one Mercado Pago order. Its row is committed
*before* Mercado Pago is called (so Mercado Pago never holds an order the kiosk does not know),
and no transaction stays open during the call. Every change that follows Mercado Pago goes
through `apply`, on a locked order, forward only; the order's own transitions and the follow-up
jobs of a payment happen in that same transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import psycopg

from kiosk import db
from kiosk.errors import Conflict, ProviderFailed, ProviderTimedOut
from kiosk.notifications import deliveries
from kiosk.orders import store as orders
from kiosk.payments import mercadopago as mp
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.payments")
logger = logging.getLogger("kiosk.payments")

OPEN = frozenset({"created", "at_terminal"})
UNPAID_FINAL = frozenset({"failed", "canceled", "expired", "action_required"})


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


def _intent(row: dict) -> Intent:
    return Intent(
        id=row["id"], order_id=row["order_id"], terminal_id=row["terminal_id"],
        provider_order_id=row["provider_order_id"], status=row["status"],
        status_detail=row["status_detail"], last_error=row["last_error"],
        created_at=row["created_at"],
    )


async def list_for_order(order_id: uuid.UUID) -> list[Intent]:
    async with db.transaction() as conn:
        rows = await db.fetch_all(conn, QUERIES["intents_of_order"], {"order_id": order_id})
    return [_intent(row) for row in rows]


async def find_by_provider_order(conn: psycopg.AsyncConnection, provider_order_id: str) -> Intent | None:
    row = await db.fetch_one(
        conn, QUERIES["intent_by_provider_order"], {"provider_order_id": provider_order_id}
    )
    return _intent(row) if row else None


# -- charging ---------------------------------------------------------------------------------

async def create(order_id: uuid.UUID, terminal_id: str) -> Intent:
    """Charge the order on `terminal_id`: write the intent, ask Mercado Pago, record the answer.

    Conflict when the order is not payable or the terminal is busy; ProviderFailed (502) or
    ProviderTimedOut (504) when Mercado Pago failed, leaving the intent in `error`. When the
    failure may have created the charge anyway (timeout, 5xx), the next attempt on the same
    terminal re-sends the same idempotency key, so Mercado Pago answers with that charge instead
    of queueing a second one.
    """
    row, charge = await _start(order_id, terminal_id)
    key = row["idempotency_key"]
    try:
        async with mp.MercadoPago.from_settings() as client:
            answer = await client.create_order(charge, key)
    except mp.MPConflict as exc:
        await _fail(row["id"], str(exc), outcome_unknown=False)
        raise Conflict(
            f"terminal {terminal_id} is busy: Mercado Pago has another order queued on it"
        ) from None
    except mp.MPTimeout as exc:
        await _fail(row["id"], str(exc), outcome_unknown=True)
        raise ProviderTimedOut(
            f"{exc}; payment intent {row['id']} is in error. The charge may exist: create a "
            f"payment intent on terminal {terminal_id} again and the same idempotency key is "
            "re-sent, so the customer is never charged twice"
        ) from None
    except mp.MPUnavailable as exc:
        await _fail(row["id"], str(exc), outcome_unknown=True)
        raise ProviderFailed(f"{exc}; payment intent {row['id']} is in error, try again") from None
    except mp.MPError as exc:
        await _fail(row["id"], str(exc), outcome_unknown=False)
        raise ProviderFailed(f"Mercado Pago refused the charge: {exc}") from None
    except BaseException:
        # Cancelled (shutdown) or a bug: never leave the row looking like a live charge.
        interrupted = _fail(row["id"], "interrupted while calling Mercado Pago", outcome_unknown=True)
        await asyncio.shield(interrupted)
        raise
    async with db.transaction() as conn:
        await conn.execute(
            QUERIES["set_provider_order"], {"id": row["id"], "provider_order_id": answer.id}
        )
        return await apply(conn, row["id"], answer)


async def _start(order_id: uuid.UUID, terminal_id: str) -> tuple[dict, mp.Charge]:
    async with db.transaction() as conn:
        order = await orders.lock(conn, order_id)
        if order["status"] != "pending_payment":
            raise Conflict(f"order is {order['status']}, not payable")
        if order["closing_status"]:
            raise Conflict(f"order is being {order['closing_status']}, not payable")
        if order["total_cents"] <= 0:
            raise Conflict("order total is zero: nothing to charge")
        remaining = int((order["expires_at"] - dt.datetime.now(dt.UTC)).total_seconds())
        if remaining < mp.MIN_EXPIRATION:
            raise Conflict("order expires in less than 30 seconds: create a new order")
        params = {"order_id": order_id, "terminal_id": terminal_id}
        current = await db.fetch_one(conn, QUERIES["open_intent_of_order"], params)
        if current and current["provider_order_id"] is None and current["terminal_id"] == terminal_id:
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
                    row = await db.fetch_one(conn, QUERIES["insert_intent"], {
                        **params,
                        "id": intent_id,
                        "idempotency_key": f"kiosk-charge-{intent_id}",
                        "external_reference": f"kiosk-{intent_id.hex}",
                        "amount_cents": order["total_cents"],
                    })
        except psycopg.errors.UniqueViolation:
            # Another order took the terminal between the check and the insert.
            raise Conflict(f"terminal {terminal_id} is busy with another charge") from None
    assert row is not None
    return row, _charge(row, order_id, terminal_id, remaining)


def _charge(row: dict, order_id: uuid.UUID, terminal_id: str, remaining: int) -> mp.Charge:
    expiration = min(mp.parse_duration(get_settings().payment_expiration), remaining)
    return mp.Charge(
        external_reference=row["external_reference"],
        amount_cents=row["amount_cents"],
        terminal_id=terminal_id,
        expiration_seconds=expiration,
        description=f"Kiosk order {str(order_id)[:8]}",
    )


async def _fail(intent_id: uuid.UUID, error: str, *, outcome_unknown: bool) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            QUERIES["fail_intent"],
            {"id": intent_id, "last_error": error[:500], "outcome_unknown": outcome_unknown},
        )
    logger.warning("payment intent %s: error: %s", intent_id, error)


# -- following Mercado Pago ---------------------------------------------------------------------

async def apply(conn: psycopg.AsyncConnection, intent_id: uuid.UUID, answer: mp.MPOrder) -> Intent:
    """Record Mercado Pago's view of the intent's order, and what it means for the kiosk order.

    Idempotent and monotonic: a status older than the stored one changes nothing, and the order
    effects below are safe to repeat. Locks the order, then the intent (the order in every path).
    """
    row = await db.fetch_one(conn, QUERIES["get_intent"], {"id": intent_id})
    assert row is not None
    order = await orders.lock(conn, row["order_id"])
    row = await db.fetch_one(conn, QUERIES["lock_intent"], {"id": intent_id})
    assert row is not None
    theirs = answer.external_reference not in (None, row["external_reference"])
    if answer.id != row["provider_order_id"] or theirs:
        logger.error("payment intent %s: Mercado Pago order %s is not its order", intent_id, answer.id)
        return _intent(row)
    if answer.status not in mp.ORDER_STATUSES:
        logger.warning("payment intent %s: unknown Mercado Pago status %r", intent_id, answer.status)
        return _intent(row)
    advanced = await db.fetch_one(conn, QUERIES["advance_intent"], {
        "id": intent_id, "status": answer.status, "status_detail": answer.status_detail,
        "provider_payment_id": answer.payment_id,
    })
    if advanced:
        logger.info("payment intent %s: %s -> %s", intent_id, row["status"], advanced["status"])
        row = advanced
    await _settle_order(conn, order, row)
    return _intent(row)


async def _settle_order(conn: psycopg.AsyncConnection, order: dict, intent: dict) -> None:
    order_id, status = order["id"], intent["status"]
    if status == "processed":
        if await orders.mark_paid(conn, order_id, intent["id"]):
            await deliveries.plan_paid(conn, order_id, order["customer_email"])
        elif order["paid_intent_id"] not in (None, intent["id"]):
            logger.error(
                "order %s was already paid by intent %s; intent %s took money too: refund it",
                order_id, order["paid_intent_id"], intent["id"],
            )
    elif status == "refunded":
        await orders.mark_refunded(conn, order_id, intent["id"])
    elif status in UNPAID_FINAL and order["status"] == "pending_payment" and order["closing_status"]:
        if not await db.fetch_one(conn, QUERIES["open_intent_of_order"], {"order_id": order_id}):
            await orders.close(conn, order_id, order["closing_status"])


# -- closing orders -----------------------------------------------------------------------------

async def close_order(order_id: uuid.UUID, status: str = "canceled") -> orders.Order:
    """Cancel (or expire) an order, releasing its stock once.

    With no open charge the order closes now. A charge still `created` is cancelled at Mercado
    Pago; a charge already on the terminal cannot be, so the order closes when the terminal
    reports the charge ended unpaid. Mercado Pago is re-read after asking: when it reports the
    payment `processed`, money was taken and the order ends `paid` (Conflict).
    """
    assert status in ("canceled", "expired")
    async with db.transaction() as conn:
        order = await orders.lock(conn, order_id)
        if order["status"] in ("canceled", "expired"):
            return await orders.read(conn, order_id)
        if order["status"] in ("paid", "refunded"):
            raise Conflict(f"order is {order['status']}; it cannot be {status}")
        if status == "expired" and order["expires_at"] > dt.datetime.now(dt.UTC):
            raise Conflict("order has not reached its expires_at")
        current = await db.fetch_one(conn, QUERIES["open_intent_of_order"], {"order_id": order_id})
        if current is None:
            await orders.close(conn, order_id, status)
            return await orders.read(conn, order_id)
        if current["provider_order_id"] is None:
            raise Conflict(
                f"a charge is being started on terminal {current['terminal_id']}; try again in a moment"
            )
        await orders.request_close(conn, order_id, status)
    answer = await _cancel_or_read(current)
    if answer is not None:
        async with db.transaction() as conn:
            await apply(conn, current["id"], answer)
    order_now = await orders.get(order_id)
    if order_now.status in ("paid", "refunded"):
        raise Conflict("the payment was processed on the terminal before the order could be "
                       f"{status}: the order is {order_now.status}")
    return order_now


async def _cancel_or_read(intent: dict) -> mp.MPOrder | None:
    """Cancel a `created` charge at Mercado Pago, or read where it is; None when unreachable
    (the charge's own notifications will close the order later)."""
    provider_order_id = intent["provider_order_id"]
    try:
        async with mp.MercadoPago.from_settings() as client:
            if intent["status"] == "created":
                try:
                    return await client.cancel_order(provider_order_id, f"kiosk-cancel-{intent['id']}")
                except mp.MPConflict:
                    pass  # already taken by the terminal (or finished): read it instead
            return await client.get_order(provider_order_id)
    except mp.MPError as exc:
        logger.warning("payment intent %s: could not cancel or read %s: %s",
                       intent["id"], provider_order_id, exc)
        return None
