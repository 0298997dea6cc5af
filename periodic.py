"""Periodic tasks: each schedule is a few lines calling into the domain.

procrastinate defers at most one job per tick and task, whatever the number of workers (a unique
row in `procrastinate_periodic_defers`), so every schedule here is safe to run on a fleet.
"""

from kiosk.queue import app
from kiosk.schedules import dispatcher

__all__ = ["app"]


@app.periodic(cron=dispatcher.dispatch_cron(), periodic_id="schedules.dispatch")
@app.task(name="schedules.dispatch", queueing_lock="schedules.dispatch", priority=10)
async def dispatch_schedules(timestamp: int) -> None:
    """Create the runs (and jobs) of every schedule's ticks up to the horizon.

    Ahead of other jobs (priority) so that busy workers delay it as little as possible.
    """
    await dispatcher.dispatch_due()


# -- expiry: stale payment intents, orders past KIOSK_ORDER_TTL (docs/payments.md) -------------
# Each tick only lists the work and defers one job per intent / order with that order's `lock`
# (tasks/payments.py, tasks/orders.py): provider errors stay per intent, and nothing runs beside
# a notification job of the same order.
from kiosk.orders import expiry  # noqa: E402
from kiosk.payments import cleanup  # noqa: E402


@app.periodic(cron=cleanup.cron(), periodic_id="payments.cleanup_payment_intents")
@app.task(name="payments.cleanup_payment_intents", queueing_lock="payments.cleanup_payment_intents")
async def cleanup_payment_intents(timestamp: int) -> dict:
    """Check every open payment intent past its time to live at Mercado Pago."""
    return {"deferred": await cleanup.defer_checks()}


@app.periodic(cron=expiry.cron(), periodic_id="orders.expire_orders")
@app.task(name="orders.expire_orders", queueing_lock="orders.expire_orders")
async def expire_orders(timestamp: int) -> dict:
    """Expire every order still waiting for payment after KIOSK_ORDER_TTL."""
    return {"deferred": await expiry.defer_expiries()}


# -- end of expiry ----------------------------------------------------------------------------
