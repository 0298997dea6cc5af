"""The periodic housekeeping's schedules (the sweep and the pruning against PostgreSQL:
tests/integration/test_job_maintenance.py).
"""

from __future__ import annotations

import periodic
from kiosk import queue


def test_the_schedules():
    schedules = {
        name: task.cron for (name, _), task in queue.app.periodic_registry.periodic_tasks.items()
    }
    assert schedules["jobs.retry_stalled_jobs"] == "* * * * *"
    assert schedules["jobs.prune_jobs"] == "0 * * * *"
    assert periodic.retry_stalled_jobs.queueing_lock == "jobs.retry_stalled_jobs"
    assert periodic.prune_jobs.lock == "jobs.prune_jobs"
