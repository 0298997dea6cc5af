"""The order-paid event the notify hook sends: its JSON body and its signature.

Apart from the hook so that the delivery ledger can freeze the body when the order becomes paid
(`deliveries.plan_paid`) without importing the sender: every attempt of one delivery then sends
the same bytes, whatever happens to the order afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from typing import Protocol

EVENT = "order.paid"


class PaidLine(Protocol):
    @property
    def sku(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def unit_price_cents(self) -> int: ...
    @property
    def quantity(self) -> int: ...


class PaidOrder(Protocol):
    """What notifications read of an order (`kiosk.orders.store.Order` is one): the notifications
    package is told about orders and never imports them, so the order lifecycle can plan its
    deliveries without an import circle."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def total_cents(self) -> int: ...
    @property
    def customer_email(self) -> str | None: ...
    @property
    def paid_at(self) -> dt.datetime | None: ...
    @property
    def items(self) -> Sequence[PaidLine]: ...


def payload(order: PaidOrder) -> bytes:
    """The body: compact, sorted JSON, so that equal events are equal bytes."""
    body = {
        "event": EVENT,
        "order_id": str(order.id),
        "status": order.status,
        "total_cents": order.total_cents,
        "customer_email": order.customer_email,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "items": [
            {
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price_cents": i.unit_price_cents,
            }
            for i in order.items
        ],
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Kiosk-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def idempotency_key(order_id: object) -> str:
    """The same on every attempt of the order's one order-paid delivery."""
    return f"order-paid-{order_id}"
