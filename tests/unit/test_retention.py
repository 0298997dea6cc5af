"""The retention task's schedule (pruning in PostgreSQL: tests/integration/test_retention.py)."""

from __future__ import annotations

import periodic
from kiosk import queue


def test_the_periodic_task_runs_hourly_on_the_maintenance_queue():
    schedules = {
        name: task.cron for (name, _), task in queue.app.periodic_registry.periodic_tasks.items()
    }
    assert schedules["retention.prune_tables"] == "30 * * * *"
    assert periodic.prune_tables.lock == "retention.prune_tables"
    assert periodic.prune_tables.queue == "maintenance"
