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
