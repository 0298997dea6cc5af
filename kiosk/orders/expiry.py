"""Order expiry: orders still waiting for payment after KIOSK_ORDER_TTL give their stock back.

Every KIOSK_EXPIRE_ORDERS_CRON tick (`orders.expire_orders` in periodic.py) lists the orders past
`expires_at` and defers one `orders.expire` job per order with the order's `lock`, so it runs
after (never beside) a notification job of that order. The job calls
`lifecycle.close_order(order_id, "expired")`: one transaction on the locked order row.

Why a payment confirmed at the same moment wins: every change of an order happens on its locked
row, and a `processed` intent makes the order paid in the same transaction that records it. So
whichever transaction takes the row first, the other sees its result:

- payment first: the order is `paid`; expiry finds it paid and leaves it (outcome `paid`);
- expiry first: the intent is still open in the kiosk, so expiry does not release anything. It
  marks the order `closing_status = expired`, cancels the charge at Mercado Pago if it is still
  `created`, re-reads it and records the answer (`processed`: the order ends paid). A charge on
  the terminal cannot be cancelled by API; the order expires when the terminal ends it unpaid.

Stock is released only by closing an order that has no open charge, at most once
(`stock_released_at`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from kiosk import db, queue
from kiosk.errors import Conflict, NotFound
from kiosk.orders import lifecycle, store
from kiosk.settings import value_or_default

logger = logging.getLogger("kiosk.orders")

EXPIRE_TASK = "orders.expire"
BATCH = 500


@dataclass(frozen=True)
class Expired:
    order_id: uuid.UUID
    status: str | None  # the order's status afterwards; None when there is no such order
    note: str


def cron() -> str:
    """The periodic task's cron (the default when a tool imports tasks.app unconfigured)."""
    cron: str = value_or_default("expire_orders_cron")
    return cron


async def defer_expiries(limit: int = BATCH) -> int:
    """Defer the expiry of every order past `expires_at` (at most `limit`); return how many.

    An order whose expiry job is still waiting gets no second job (`queueing_lock`).
    """
    due = await store.due_for_expiry(limit)
    deferred = 0
    async with db.transaction() as conn:
        for order_id in due:
            job_id = await queue.defer(
                conn,
                EXPIRE_TASK,
                queueing_lock=f"expire-order-{order_id}",
                lock=f"order-{order_id}",
                order_id=str(order_id),
            )
            deferred += job_id is not None
    if due:
        logger.info("%d orders past their expiry, %d expiry jobs deferred", len(due), deferred)
    return deferred


async def expire(order_id: uuid.UUID) -> Expired:
    """Expire one order and release its stock, or say why not. Idempotent."""
    try:
        order = await lifecycle.close_order(order_id, "expired")
    except NotFound:
        return Expired(order_id, None, "no such order")
    except Conflict as exc:
        # Paid (a payment won), not due yet, or a charge is being started: nothing changed.
        order = await store.get(order_id)
        logger.info("order %s not expired: %s", order_id, exc)
        return Expired(order_id, order.status, str(exc))
    if order.status == "pending_payment":
        note = "waiting for the charge on the terminal to end unpaid"
    else:
        note = f"order is {order.status}"
    return Expired(order_id, order.status, note)
