"""The order-paid event the notify hook sends: its JSON body and its signature.

Apart from the hook so that the delivery ledger can freeze the body when the order becomes paid
(`deliveries.plan_paid`) without importing the sender: every attempt of one delivery then sends
the same bytes, whatever happens to the order afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from kiosk.orders import store as orders

EVENT = "order.paid"


def payload(order: orders.Order) -> bytes:
    """The body: compact, sorted JSON, so that equal events are equal bytes."""
    body = {
        "event": EVENT,
        "order_id": str(order.id),
        "status": order.status,
        "total_cents": order.total_cents,
        "customer_email": order.customer_email,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "items": [
            {"sku": i.sku, "name": i.name, "quantity": i.quantity,
             "unit_price_cents": i.unit_price_cents}
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
