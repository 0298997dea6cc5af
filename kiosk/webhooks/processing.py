"""Processing a Mercado Pago notification: read the truth from Mercado Pago, then apply it.

Runs in a worker (`payments.process_notification`, deferred by the inbox). Here, in the webhooks
package, so that the worker path goes one way: webhooks (inbox, this) -> payments (intents, the
Mercado Pago client), never back. The notification body is only a hint, so the
order is always read with `GET /v1/orders/{id}`; the intent, the order and the follow-up jobs
change in one transaction (`orders.lifecycle.apply`, forward only). An order no intent knows by id
is matched by its `external_reference` (a create whose answer was lost) and linked; only an order
whose reference is not ours is `ignored`. `MPUnavailable` propagates so the job is retried with
backoff; on the last attempt the job fails and nothing has changed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from kiosk import db
from kiosk.orders import lifecycle
from kiosk.payments import intents
from kiosk.payments import mercadopago as mp
from kiosk.webhooks import inbox

logger = logging.getLogger("kiosk.payments")


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
    try:
        async with mp.MercadoPago.from_settings() as client:
            answer = await client.get_order(provider_order_id)
    except mp.MPNotFound:
        async with db.transaction() as conn:
            await inbox.finish(conn, provider_order_id, up_to, "ignored")
        logger.warning(
            "Mercado Pago does not know order %s (intent %s)",
            provider_order_id,
            intent.id if intent else None,
        )
        return Outcome(
            provider_order_id,
            intent.id if intent else None,
            intent.status if intent else None,
            "unknown to Mercado Pago",
        )
    if intent is None:
        return await _match(provider_order_id, answer, up_to)
    async with db.transaction() as conn:
        updated = await lifecycle.apply(conn, intent.id, answer)
        await inbox.finish(conn, provider_order_id, up_to, "processed")
    updated = await lifecycle.cancel_if_unwanted(updated)
    return Outcome(
        provider_order_id, intent.id, updated.status, f"Mercado Pago says {answer.status}"
    )


async def _match(provider_order_id: str, answer: mp.MPOrder, up_to: int | None) -> Outcome:
    """An order no intent knows by id: one of ours whose create's answer was lost (or never
    recorded), found by its `external_reference`; it is linked and applied as usual. An order
    whose reference is not ours stays `ignored`."""
    async with db.transaction() as conn:
        found = None
        if answer.external_reference:
            found = await intents.find_by_reference(conn, answer.external_reference)
        linked = found is not None and await intents.link_provider_order(conn, found.id, answer.id)
        if found is None or not linked:
            await inbox.finish(conn, provider_order_id, up_to, "ignored")
            note = (
                f"not ours: no payment intent has external_reference {answer.external_reference!r}"
                if found is None
                else f"payment intent {found.id} is linked to another Mercado Pago order"
            )
            logger.log(
                logging.INFO if found is None else logging.ERROR,
                "Mercado Pago order %s: %s",
                provider_order_id,
                note,
            )
            return Outcome(provider_order_id, found.id if found else None, None, note)
        updated = await lifecycle.apply(conn, found.id, answer)
        await inbox.finish(conn, provider_order_id, up_to, "processed")
    logger.warning(
        "Mercado Pago order %s matched payment intent %s by its reference",
        provider_order_id,
        found.id,
    )
    updated = await lifecycle.cancel_if_unwanted(updated)
    return Outcome(
        provider_order_id,
        found.id,
        updated.status,
        f"matched by external_reference; Mercado Pago says {answer.status}",
    )
