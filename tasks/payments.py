"""Payment jobs: follow a Mercado Pago order after a notification."""

from __future__ import annotations

import contextlib

from procrastinate import JobContext

from kiosk.payments import mercadopago, processing
from kiosk.queue import app
from tasks.retry import Backoff, database_unavailable


@app.task(
    name="payments.process_notification",
    retry=Backoff(mercadopago.MPUnavailable),
    pass_context=True,
)
async def process_notification(context: JobContext, provider_order_id: str) -> dict:
    """Read the order from Mercado Pago and apply it (deferred by the webhook)."""
    try:
        outcome = await processing.process_notification(provider_order_id)
    except mercadopago.MPUnavailable:
        assert context.job.id is not None
        await processing.release_queueing_lock(context.job.id)
        raise
    except Exception as exc:
        if database_unavailable(exc):
            # Retried too (tasks/retry.py). While the database is still down neither this nor
            # the retry can be written: the job stays `doing` for the stalled-job sweep.
            assert context.job.id is not None
            with contextlib.suppress(Exception):
                await processing.release_queueing_lock(context.job.id)
        raise
    return {"intent_status": outcome.intent_status, "note": outcome.note}
