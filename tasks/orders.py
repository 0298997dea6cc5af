"""Order jobs: a paid order's receipt email and notify hook (each at least once), expiry."""

from __future__ import annotations

import uuid
from typing import Any

from kiosk.notifications import deliveries, hook, receipt
from kiosk.orders import expiry
from kiosk.orders import store as orders
from kiosk.queue import app
from kiosk.queues import names
from tasks.retry import LedgerBackoff

# Both run with the procrastinate lock `delivery-<kind>-<order id>` (deliveries.lock_name): two
# attempts of one delivery never run at once. Their ledger decides when to try again.


@app.task(
    name=deliveries.RECEIPT_TASK,
    queue=names.NOTIFICATIONS,
    retry=LedgerBackoff(deliveries.DeliveryRetry),
)
async def send_receipt(order_id: str) -> str:
    return await receipt.send(await orders.get(uuid.UUID(order_id)))


@app.task(
    name=deliveries.NOTIFY_PAID_TASK,
    queue=names.NOTIFICATIONS,
    retry=LedgerBackoff(deliveries.DeliveryRetry),
)
async def notify_paid(order_id: str) -> str:
    return await hook.notify_paid(await orders.get(uuid.UUID(order_id)))


@app.task(name=expiry.EXPIRE_TASK, queue=names.MAINTENANCE)
async def expire(order_id: str) -> dict[str, Any]:
    """Expire one order past KIOSK_ORDER_TTL (deferred by the periodic `orders.expire_orders`)."""
    outcome = await expiry.expire(uuid.UUID(order_id))
    return {"status": outcome.status, "note": outcome.note}
