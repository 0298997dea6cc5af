"""Periodic tasks: each schedule is a few lines calling into the domain.

procrastinate defers at most one job per tick and task, whatever the number of workers (a unique
row in `procrastinate_periodic_defers`), so every schedule here is safe to run on a fleet.
"""

from typing import Any

from kiosk import retention
from kiosk.jobs import maintenance
from kiosk.notifications import deliveries
from kiosk.orders import cleanup, expiry
from kiosk.queue import app
from kiosk.queues import names
from kiosk.schedules import dispatcher
from kiosk.settings import get_settings

__all__ = ["app"]


@app.periodic(cron=dispatcher.dispatch_cron(), periodic_id="schedules.dispatch")
@app.task(
    name="schedules.dispatch",
    queue=names.SCHEDULES,
    queueing_lock="schedules.dispatch",
    priority=10,
)
async def dispatch_schedules(timestamp: int) -> None:
    """Create the runs (and jobs) of every schedule's ticks up to the horizon.

    Ahead of other jobs (priority) so that busy workers delay it as little as possible.
    """
    await dispatcher.dispatch_due()


@app.periodic(cron="* * * * *", periodic_id="every-minute")
# A queueing lock, not a lock: ticks never pile up, and a sweep held by a dead worker cannot block
# the very sweep that will free it.
@app.task(
    name="jobs.retry_stalled_jobs",
    queue=names.MAINTENANCE,
    queueing_lock="jobs.retry_stalled_jobs",
    timeout=120,
)
async def retry_stalled_jobs(timestamp: int) -> dict[str, list[int]]:
    """Jobs of workers silent for KIOSK_WORKER_STALLED_AFTER seconds go back to `todo`."""
    stalled_after = get_settings().worker_stalled_after
    return {
        "retried": await maintenance.retry_stalled_jobs(
            app.job_manager, stalled_after=stalled_after
        )
    }


@app.periodic(cron="0 * * * *", periodic_id="hourly")
# A lock: two prunes never run at once (a dead worker's one is freed by the sweep above).
@app.task(name="jobs.prune_jobs", queue=names.MAINTENANCE, lock="jobs.prune_jobs", timeout=1800)
async def prune_jobs(timestamp: int) -> dict[str, int]:
    """Finished jobs past KIOSK_PRUNE_SUCCEEDED_DAYS / KIOSK_PRUNE_FAILED_DAYS are deleted."""
    result = await maintenance.prune_jobs()
    return {"jobs": result.jobs, "old_outcomes": result.old_outcomes, "batches": result.batches}


@app.periodic(cron="30 * * * *", periodic_id="retention.prune_tables")
# Half an hour away from prune_jobs, so the two never compete; a lock keeps runs from overlapping.
@app.task(
    name="retention.prune_tables",
    queue=names.MAINTENANCE,
    lock="retention.prune_tables",
    timeout=1800,
)
async def prune_tables(timestamp: int) -> dict[str, int]:
    """Inbox, schedule runs, exports and audit rows past their KIOSK_RETAIN_*_DAYS are deleted."""
    return await retention.prune_tables()


# Payments and orders: each tick only lists the work and defers one job per intent / order with
# that order's `lock` (tasks/payments.py, tasks/orders.py): provider errors stay per intent, and
# nothing runs beside a notification job of the same order.


@app.periodic(cron=cleanup.cron(), periodic_id="payments.cleanup_payment_intents")
@app.task(
    name="payments.cleanup_payment_intents",
    queue=names.PAYMENTS,
    queueing_lock="payments.cleanup_payment_intents",
)
async def cleanup_payment_intents(timestamp: int) -> dict[str, Any]:
    """Check every open payment intent past its time to live at Mercado Pago."""
    return {"deferred": await cleanup.defer_checks()}


@app.periodic(cron=expiry.cron(), periodic_id="orders.expire_orders")
@app.task(
    name="orders.expire_orders",
    queue=names.MAINTENANCE,
    queueing_lock="orders.expire_orders",
)
async def expire_orders(timestamp: int) -> dict[str, Any]:
    """Expire every order still waiting for payment after KIOSK_ORDER_TTL."""
    return {"deferred": await expiry.defer_expiries()}


@app.periodic(cron="* * * * *", periodic_id="orders.resume_deliveries")
@app.task(
    name="orders.resume_deliveries",
    queue=names.MAINTENANCE,
    queueing_lock="orders.resume_deliveries",
)
async def resume_deliveries(timestamp: int) -> dict[str, int]:
    """Receipts and hooks owed with no job left for them get one again (at least once); those past
    KIOSK_DELIVERY_MAX_AGE_SECONDS or _MAX_ATTEMPTS are given up and listed for operators."""
    return await deliveries.resume_due()
