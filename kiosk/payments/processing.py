"""Processing a Mercado Pago notification: read the truth from Mercado Pago, then apply it.

Runs in a worker (`payments.process_notification`). The notification body is only a hint, so the
order is always read with `GET /v1/orders/{id}`; the intent, the order and the follow-up jobs
change in one transaction (`intents.apply`, forward only). `MPUnavailable` propagates so the job
is retried with backoff; on the last attempt the job fails and nothing has changed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from kiosk import db
from kiosk.payments import intents
from kiosk.payments import mercadopago as mp
from kiosk.sql import load_queries
from kiosk.webhooks import inbox

logger = logging.getLogger("kiosk.payments")
QUERIES = load_queries("kiosk.payments")


@dataclass(frozen=True)
class Outcome:
    provider_order_id: str
    intent_id: uuid.UUID | None
    intent_status: str | None
    note: str


async def process_notification(provider_order_id: str) -> Outcome:
    async with db.transaction() as conn:
        intent = await intents.find_by_provider_order(conn, provider_order_id)
        # Notifications received so far are covered by the read below; later ones get a new job.
        up_to = await inbox.last_received(conn, provider_order_id)
        if intent is None:
            await inbox.finish(conn, provider_order_id, up_to, "ignored")
            return Outcome(provider_order_id, None, None, "no payment intent for this order")
    try:
        async with mp.MercadoPago.from_settings() as client:
            answer = await client.get_order(provider_order_id)
    except mp.MPNotFound:
        async with db.transaction() as conn:
            await inbox.finish(conn, provider_order_id, up_to, "ignored")
        logger.warning("Mercado Pago does not know order %s (intent %s)", provider_order_id, intent.id)
        return Outcome(provider_order_id, intent.id, intent.status, "unknown to Mercado Pago")
    async with db.transaction() as conn:
        updated = await intents.apply(conn, intent.id, answer)
        await inbox.finish(conn, provider_order_id, up_to, "processed")
    return Outcome(provider_order_id, intent.id, updated.status, f"Mercado Pago says {answer.status}")


