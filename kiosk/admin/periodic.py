"""The periodic tasks registered in `periodic.py`: schedule, last and next tick, run now."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import croniter
import psycopg
from procrastinate.periodic import PeriodicTask

from kiosk import db, queue
from kiosk.admin.jobs import QUERIES
from kiosk.errors import NotFound


class PeriodicNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no periodic task named {name!r}")
        self.name = name


@dataclass(frozen=True)
class PeriodicInfo:
    name: str
    periodic_id: str
    cron: str
    queue: str
    last_tick: dt.datetime | None
    last_job_id: int | None
    next_ticks: list[dt.datetime]


def _registry() -> dict[tuple[str, str], PeriodicTask[Any, Any, Any]]:
    """The periodic tasks by (task name, periodic id)."""
    queue.import_tasks()
    return queue.app.periodic_registry.periodic_tasks


def _next_ticks(cron: str, count: int = 3) -> list[dt.datetime]:
    it = croniter.croniter(cron, dt.datetime.now(dt.UTC))
    return [it.get_next(dt.datetime) for _ in range(count)]


async def list_periodic(conn: psycopg.AsyncConnection) -> list[PeriodicInfo]:
    last = {
        (r["task_name"], r["periodic_id"]): r
        for r in await db.fetch_all(conn, QUERIES["periodic_last_runs"])
    }
    result = []
    for (name, periodic_id), task in sorted(_registry().items()):
        row = last.get((name, periodic_id))
        result.append(
            PeriodicInfo(
                name=name,
                periodic_id=periodic_id,
                cron=task.cron,
                queue=task.task.queue,
                last_tick=dt.datetime.fromtimestamp(row["defer_timestamp"], dt.UTC)
                if row
                else None,
                last_job_id=row["job_id"] if row else None,
                next_ticks=_next_ticks(task.cron),
            )
        )
    return result


async def run_now(conn: psycopg.AsyncConnection, name: str) -> int | None:
    """Defer the task once, outside its schedule, as the periodic deferrer would at this second."""
    matches = [task for (task_name, _), task in _registry().items() if task_name == name]
    if not matches:
        raise PeriodicNotFound(name)
    task = matches[0]
    configured = task.configure_kwargs
    task_kwargs: dict[str, Any] = {
        **(configured.get("task_kwargs") or {}),
        "timestamp": int(time.time()),
    }
    return await queue.defer(
        conn,
        name,
        queue=task.task.queue,
        queueing_lock=configured.get("queueing_lock"),
        lock=configured.get("lock"),
        priority=configured.get("priority"),
        **task_kwargs,
    )
