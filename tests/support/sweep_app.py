"""`tests.support.fetch_app` (so every test task) with the production stalled-job sweep deferred
every 2 seconds instead of every minute, for the tests of a worker killed mid-job.

Run with `procrastinate --app=tests.support.sweep_app.app worker`. The task is the real
`jobs.retry_stalled_jobs` of periodic.py (its code, its queueing lock, its outcome rows), deferred
by procrastinate's periodic deferrer as in production, on one schedule as in production (two would
defer two sweeps at a worker's start, which could then run at once); only the tick is shorter, so
a test sees a dead worker's jobs come back within seconds instead of waiting up to a minute.
"""

from __future__ import annotations

from periodic import retry_stalled_jobs
from tests.support.fetch_app import app

__all__ = ["app"]

_schedules = app.periodic_registry.periodic_tasks
for _key in [key for key, periodic in _schedules.items() if periodic.task is retry_stalled_jobs]:
    del _schedules[_key]
app.periodic(cron="* * * * * */2", periodic_id="tests.every-2s")(retry_stalled_jobs)
