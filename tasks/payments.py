"""Payment jobs: follow a Mercado Pago order after a notification, or when it went quiet; resolve
an ambiguous create; refund money the kiosk cannot honour."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from procrastinate import JobContext

from kiosk import queue
from kiosk.jobs import ids
from kiosk.orders import cleanup, lifecycle
from kiosk.payments import intents, mercadopago, refunds
from kiosk.queue import app
from kiosk.queues import names
from kiosk.webhooks import inbox, processing
from tasks.retry import Backoff, database_unavailable


@app.task(
    name=inbox.PROCESS_TASK,
    queue=names.PAYMENTS,
    retry=Backoff(mercadopago.MPUnavailable),
    pass_context=True,
)
async def process_notification(context: JobContext, provider_order_id: str) -> dict[str, Any]:
    """Read the order from Mercado Pago and apply it (deferred by the webhook)."""
    try:
        outcome = await processing.process_notification(provider_order_id)
    except mercadopago.MPUnavailable:
        await queue.release_queueing_lock(ids.job_id(context.job))
        raise
    except Exception as exc:
        if database_unavailable(exc):
            # Retried too (tasks/retry.py). While the database is still down neither this nor
            # the retry can be written: the job stays `doing` for the stalled-job sweep.
            job_id = ids.job_id(context.job)
            with contextlib.suppress(Exception):
                await queue.release_queueing_lock(job_id)
        raise
    return {"intent_status": outcome.intent_status, "note": outcome.note}


@app.task(name=cleanup.CHECK_TASK, queue=names.PAYMENTS)
async def check_stale_intent(intent_id: str) -> dict[str, Any]:
    """Settle a charge Mercado Pago should have ended (deferred by the periodic
    `payments.cleanup_payment_intents`). Not retried: a provider error fails this job and the
    next tick checks the intent again."""
    outcome = await cleanup.check(uuid.UUID(intent_id))
    return {"status": outcome.status, "note": outcome.note}


async def _retried(context: JobContext, exc: BaseException) -> None:
    """Before a retry: drop the job's queueing lock (procrastinate#1543, see above)."""
    if isinstance(exc, mercadopago.MPUnavailable) or database_unavailable(exc):
        job_id = ids.job_id(context.job)
        with contextlib.suppress(Exception):
            await queue.release_queueing_lock(job_id)


@app.task(
    name=intents.RESOLVE_TASK,
    queue=names.PAYMENTS,
    retry=Backoff(mercadopago.MPUnavailable),
    pass_context=True,
)
async def resolve_intent(context: JobContext, intent_id: str) -> dict[str, Any]:
    """Re-send an ambiguous create with its idempotency key until Mercado Pago answers (deferred
    with the intent marked `unresolved`; again by the periodic clean-up should this give up)."""
    try:
        outcome = await lifecycle.resolve(uuid.UUID(intent_id))
    except Exception as exc:
        await _retried(context, exc)
        raise
    return {"status": outcome.status, "note": outcome.note}


@app.task(
    name=refunds.REFUND_TASK,
    queue=names.PAYMENTS,
    retry=Backoff(mercadopago.MPUnavailable),
    pass_context=True,
)
async def refund_intent(context: JobContext, intent_id: str) -> dict[str, Any]:
    """Refund a charge the kiosk cannot honour, with its one idempotency key (deferred with the
    refund decision; again by the periodic clean-up should this give up)."""
    try:
        outcome = await refunds.refund(uuid.UUID(intent_id))
    except Exception as exc:
        await _retried(context, exc)
        raise
    return {"refund_status": outcome.refund_status, "note": outcome.note}
