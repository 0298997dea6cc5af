"""The notify hook: a signed JSON POST to KIOSK_NOTIFY_URL when an order is paid, at least once.

Every attempt of an order's delivery sends the same body (frozen when the order became paid) with
`X-Kiosk-Event: order.paid`, `Idempotency-Key: order-paid-<order id>` and
`X-Kiosk-Signature: t=<unix seconds>,v1=<hex>` where v1 is HMAC-SHA256(KIOSK_NOTIFY_SECRET,
"<t>." + body) and `t` is the time of *this attempt*, so a receiver's replay window can stay short
while retries go on for hours; receivers drop copies by the key (docs/payments.md). The URL
passes the SSRF guard on every send. A connection that never opened, or a 5xx/408/429 answer:
not delivered. A timeout or a connection lost after sending: maybe delivered. Both are sent again
(deliveries.py); another 4xx is refused for good. The connection goes to the address the SSRF
guard checked (`netguard.pinned_client`).
"""

from __future__ import annotations

import time

import httpx

from kiosk import tls
from kiosk.netguard import Unresolvable, UnsafeURL, pinned_client
from kiosk.notifications import deliveries
from kiosk.notifications.event import EVENT, PaidOrder, idempotency_key, payload, signature
from kiosk.settings import get_settings

__all__ = ["EVENT", "client", "notify_paid", "payload", "signature"]


def client(timeout: float) -> httpx.AsyncClient:
    """The HTTP client of one attempt: checked, pinned to the address it checked, no redirects."""
    return pinned_client(get_settings().outbound_allowed, timeout=timeout, verify=tls.http())


async def notify_paid(order: PaidOrder) -> str:
    settings = get_settings()

    async def deliver(attempt: deliveries.Attempt) -> None:
        body = attempt.payload or payload(order)
        url = settings.notify_url
        if not url:
            raise deliveries.DeliveryRetry("KIOSK_NOTIFY_URL is not set")
        headers = {
            "Content-Type": "application/json",
            "X-Kiosk-Event": EVENT,
            "Idempotency-Key": idempotency_key(order.id),
            "X-Kiosk-Signature": signature(
                settings.notify_secret.get_secret_value(), int(time.time()), body
            ),
        }
        async with client(settings.delivery_timeout_seconds) as http:
            try:
                response = await http.post(url, content=body, headers=headers)
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

    return await deliveries.deliver(
        order.id, deliveries.NOTIFY_PAID, deliver, payload=payload(order)
    )
