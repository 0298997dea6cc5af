"""The notify hook: a signed JSON POST to KIOSK_NOTIFY_URL when an order is paid, at most once.

Headers: `X-Kiosk-Event: order.paid`, `Idempotency-Key: order-paid-<order id>` (the same on
every attempt) and `X-Kiosk-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(KIOSK_NOTIFY_SECRET, "<t>." + body). The URL passes the SSRF guard on every send,
and the connection goes to the address the guard checked (`netguard.pinned_client`).
A connection that never opened, or a 5xx/408/429 answer, means the receiver did not take it:
retried. A timeout or a connection lost after sending may have delivered it: never resent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx

from kiosk import tls
from kiosk.netguard import UnsafeURL, Unresolvable, pinned_client
from kiosk.notifications import deliveries
from kiosk.orders import store as orders
from kiosk.settings import get_settings

EVENT = "order.paid"


def payload(order: orders.Order) -> bytes:
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
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def notify_paid(order_id: uuid.UUID) -> str:
    order = await orders.get(order_id)
    settings = get_settings()
    body = payload(order)

    async def deliver() -> None:
        url = settings.notify_url
        if not url:
            raise deliveries.DeliveryRetry("KIOSK_NOTIFY_URL is not set")
        headers = {
            "Content-Type": "application/json",
            "X-Kiosk-Event": EVENT,
            "Idempotency-Key": f"order-paid-{order.id}",
            "X-Kiosk-Signature": signature(
                settings.notify_secret.get_secret_value(), int(time.time()), body
            ),
        }
        timeout = settings.delivery_timeout_seconds
        async with pinned_client(settings.outbound_allowed, timeout=timeout, verify=tls.http()) as client:
            try:
                response = await client.post(url, content=body, headers=headers)
            except Unresolvable as exc:  # nothing was sent
                raise deliveries.DeliveryRetry(f"KIOSK_NOTIFY_URL: {exc}") from None
            except UnsafeURL as exc:
                raise deliveries.DeliveryFailed(f"KIOSK_NOTIFY_URL refused: {exc}") from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise deliveries.DeliveryRetry(f"cannot connect: {type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise deliveries.DeliveryUncertain(
                    f"no answer after sending: {type(exc).__name__}"
                ) from None
        if response.is_success:
            return
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise deliveries.DeliveryRetry(f"receiver answered HTTP {response.status_code}")
        raise deliveries.DeliveryFailed(f"receiver answered HTTP {response.status_code}")

    return await deliveries.deliver_once(order.id, deliveries.NOTIFY_PAID, deliver)
