"""Orders in the database: creation with atomic stock reservation, reads, status transitions.

Status transitions are monotonic and always made on a locked order row (`lock`):
`pending_payment` -> `paid` | `canceled` | `expired`; `paid` -> `refunded`. A closed order never
becomes paid: money taken for it later is refunded (kiosk.payments.refunds), so stock always equals
what was put on the shelf minus what was sold. Stock is taken at creation and given back at most
once (`stock_released_at`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import db
from kiosk.devices import store as devices
from kiosk.errors import Conflict, Invalid, NotFound
from kiosk.settings import get_settings
from kiosk.sql import load_queries
from kiosk.validators import is_email

QUERIES = load_queries("kiosk.orders")
logger = logging.getLogger("kiosk.orders")

STATUSES = ("pending_payment", "paid", "canceled", "expired", "refunded")


@dataclass(frozen=True)
class OrderItem:
    sku: str
    name: str
    unit_price_cents: int
    quantity: int


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    status: str
    items: tuple[OrderItem, ...]
    total_cents: int
    customer_email: str | None
    expires_at: dt.datetime
    created_at: dt.datetime
    closing_status: str | None
    closing_requested_at: dt.datetime | None
    paid_at: dt.datetime | None
    # The device that created the order; None when made with the admin token (or before devices).
    device_id: int | None = None


async def create(
    lines: Iterable[tuple[str, int]], customer_email: str | None, device_id: int | None = None
) -> Order:
    """Reserve the stock of every line and create the order, all in one transaction.

    Lines for the same sku are added up. Products are taken in sku order, so two orders that
    share products never deadlock. Not enough stock for any line: Conflict naming the sku, and
    nothing is taken. An order of a device (`device_id`) first takes one of the device's
    open-order slots in the same transaction (TooManyRequests when none is left).
    """
    wanted: Counter[str] = Counter()
    for sku, quantity in lines:
        wanted[sku] += quantity
    if not wanted:
        raise Invalid("an order needs at least one item")
    if customer_email is not None and not is_email(customer_email):
        raise Invalid("customer_email is not a valid email address")
    order_id = uuid.uuid4()
    async with db.transaction() as conn:
        if device_id is not None:
            await devices.take_order_slot(conn, device_id)
        taken = []
        for sku in sorted(wanted):
            params = {"sku": sku, "quantity": wanted[sku]}
            row = await db.fetch_one(conn, QUERIES["reserve_stock"], params)
            if row is None:
                product = await db.fetch_one(conn, QUERIES["product_stock"], params)
                if product is None:
                    raise Invalid(f"unknown sku {sku!r}")
                raise Conflict(
                    f"not enough stock for sku {sku!r}: {wanted[sku]} requested, "
                    f"{product['stock']} left"
                )
            taken.append((row, wanted[sku]))
        total = sum(row["price_cents"] * quantity for row, quantity in taken)
        await conn.execute(
            QUERIES["insert_order"],
            {
                "id": order_id,
                "total_cents": total,
                "customer_email": customer_email,
                "ttl": get_settings().order_ttl,
                "device_id": device_id,
            },
        )
        for row, quantity in taken:
            await conn.execute(
                QUERIES["insert_order_item"],
                {
                    "order_id": order_id,
                    "sku": row["sku"],
                    "name": row["name"],
                    "unit_price_cents": row["price_cents"],
                    "quantity": quantity,
                },
            )
        return await read(conn, order_id)


async def get(order_id: uuid.UUID) -> Order:
    async with db.transaction() as conn:
        return await read(conn, order_id)


async def check_owner(order_id: uuid.UUID, device_id: int | None) -> None:
    """NotFound, as for an unknown order, unless the order exists and device `device_id` created
    it; `device_id` None (the admin token) may act on any order. An order's device never changes,
    so the check holds for the transaction that follows."""
    if device_id is None:
        return
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["order_device"], {"id": order_id})
    if row is None or row["device_id"] != device_id:
        raise NotFound(f"order {order_id} not found")


async def read(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> Order:
    row = await db.fetch_one(conn, QUERIES["get_order"], {"id": order_id})
    if row is None:
        raise NotFound(f"order {order_id} not found")
    return await _order(conn, row)


@dataclass(frozen=True)
class LockedOrder:
    """The columns of an order its transitions decide on, read with the row locked (`lock`)."""

    id: uuid.UUID
    status: str
    total_cents: int
    customer_email: str | None
    expires_at: dt.datetime
    closing_status: str | None
    stock_released_at: dt.datetime | None
    paid_intent_id: uuid.UUID | None


CLOSED = ("canceled", "expired")


async def lock(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> LockedOrder:
    """The order row, locked until the transaction ends; NotFound when there is none."""
    row = await db.fetch_one_as(conn, LockedOrder, QUERIES["lock_order"], {"id": order_id})
    if row is None:
        raise NotFound(f"order {order_id} not found")
    return row


async def _order(conn: psycopg.AsyncConnection, row: dict[str, Any]) -> Order:
    items = await db.fetch_all(conn, QUERIES["order_items"], {"order_id": row["id"]})
    return Order(
        id=row["id"],
        status=row["status"],
        items=tuple(OrderItem(**item) for item in items),
        total_cents=row["total_cents"],
        customer_email=row["customer_email"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        closing_status=row["closing_status"],
        closing_requested_at=row["closing_requested_at"],
        paid_at=row["paid_at"],
        device_id=row["device_id"],
    )


async def release_stock(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> bool:
    """Give the order's units back, once per order however often it is called."""
    if await db.fetch_one(conn, QUERIES["mark_stock_released"], {"id": order_id}) is None:
        return False
    await conn.execute(QUERIES["return_stock"], {"order_id": order_id})
    return True


async def close(conn: psycopg.AsyncConnection, order_id: uuid.UUID, status: str) -> bool:
    """pending_payment -> canceled/expired and release the stock; False when not pending."""
    if status not in CLOSED:
        raise ValueError(f"an order is closed as canceled or expired, not {status!r}")
    if await db.fetch_one(conn, QUERIES["close_order"], {"id": order_id, "status": status}) is None:
        return False
    await release_stock(conn, order_id)
    logger.info("order %s %s", order_id, status)
    return True


async def request_close(conn: psycopg.AsyncConnection, order_id: uuid.UUID, status: str) -> None:
    """Close the order once its open charge ends unpaid (a charge on a terminal cannot be
    cancelled by API)."""
    await conn.execute(QUERIES["request_close"], {"id": order_id, "status": status})


async def mark_paid(
    conn: psycopg.AsyncConnection, order_id: uuid.UUID, intent_id: uuid.UUID
) -> bool:
    """Money was taken by `intent_id`: a pending order becomes paid. False when it is not pending
    (paid already, or closed with its stock released: the caller refunds that charge)."""
    row = await db.fetch_one(conn, QUERIES["mark_paid"], {"id": order_id, "intent_id": intent_id})
    if row is None:
        return False
    logger.info("order %s paid by payment intent %s", order_id, intent_id)
    return True


async def mark_refunded(
    conn: psycopg.AsyncConnection, order_id: uuid.UUID, intent_id: uuid.UUID
) -> bool:
    params = {"id": order_id, "intent_id": intent_id}
    return await db.fetch_one(conn, QUERIES["mark_refunded"], params) is not None


async def due_for_expiry(limit: int = 100) -> list[uuid.UUID]:
    """Orders past expires_at still waiting for payment (for the periodic expiry job)."""
    async with db.transaction() as conn:
        rows = await db.fetch_all(conn, QUERIES["due_for_expiry"], {"limit": limit})
    return [row["id"] for row in rows]
