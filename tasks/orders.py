"""Follow-up jobs of a paid order: the receipt email and the notify hook, each at most once."""

from __future__ import annotations

import uuid

from kiosk.notifications import deliveries, hook, receipt
from kiosk.queue import app
from tasks.retry import Backoff


@app.task(name="orders.send_receipt", retry=Backoff(deliveries.DeliveryRetry))
async def send_receipt(order_id: str) -> str:
    return await receipt.send(uuid.UUID(order_id))


@app.task(name="orders.notify_paid", retry=Backoff(deliveries.DeliveryRetry))
async def notify_paid(order_id: str) -> str:
    return await hook.notify_paid(uuid.UUID(order_id))
