"""The dispatcher: turns cron ticks into runs and their jobs, each tick exactly once.

It runs as a procrastinate periodic task (`periodic.py`, every `KIOSK_SCHEDULES_DISPATCH_EVERY`
seconds) and right after a schedule is created, edited or activated. For one schedule, in one
transaction that holds the schedule's row lock, it:

1. plans the ticks after the schedule's cursor (`dispatched_until`) up to now + the horizon;
2. inserts one run per tick (`ON CONFLICT DO NOTHING` on the unique (schedule, tick)) and defers
   the executor job of every run it inserted on the same connection, `schedule_at=` its tick;
3. moves the cursor to the end of the window.

Runs are created a horizon ahead so a seconds-level cron keeps its ticks although the dispatcher
runs only every minute; the row lock, the cursor and the unique index each on their own prevent a
second run for a tick, so any number of workers, a slow dispatch or a restart are harmless.

Ticks already past when planned were missed (no dispatcher ran: an outage). The newest
`KIOSK_SCHEDULES_CATCH_UP_LIMIT` of them still run, at once; older ones are recorded as `skipped`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import psycopg

from kiosk import cron as cron_module
from kiosk import db, queue
from kiosk.schedules import store
from kiosk.settings import get_settings, value_or_default

logger = logging.getLogger("kiosk.schedules")

EXECUTE_TASK = "schedules.execute_run"
# Skipped ticks are recorded one row each, at most this many per dispatch: a per-second cron after
# a day of outage records the newest ones, and their error says that older ticks were not.
MAX_SKIPPED_ROWS = 1000


def horizon_seconds(dispatch_every: int) -> float:
    """How far ahead runs are created: one dispatch interval plus a margin for a late dispatch."""
    return dispatch_every + max(5.0, dispatch_every / 2)


def dispatch_cron() -> str:
    """The dispatcher's own cron, in procrastinate's format (seconds as a sixth field, last).

    Read when `periodic.py` is imported; without a configuration (importing `tasks.app` from a
    tool) it falls back to every minute.
    """
    every = value_or_default("schedules_dispatch_every")
    return "* * * * *" if every == 60 else f"* * * * * */{every}"


@dataclass(frozen=True)
class Plan:
    """What one dispatch does for one schedule."""

    until: dt.datetime
    skipped: list[dt.datetime] = field(default_factory=list)
    catch_up: list[dt.datetime] = field(default_factory=list)  # missed, run at once
    upcoming: list[dt.datetime] = field(default_factory=list)  # run at their tick
    more_missed: bool = False  # missed ticks older than the skipped rows, not recorded


def plan(
    cron: cron_module.Cron,
    cursor: dt.datetime,
    now: dt.datetime,
    horizon: float,
    catch_up_limit: int,
) -> Plan:
    """Ticks after `cursor` up to `now + horizon`, split into skipped, caught up and upcoming."""
    until = now + dt.timedelta(seconds=horizon)
    upcoming = list(cron.ticks(max(cursor, now), until))
    missed: list[dt.datetime] = []
    more_missed = False
    if cursor < now:
        cap = catch_up_limit + MAX_SKIPPED_ROWS
        for tick in cron.ticks_back(now, cursor):
            if len(missed) == cap:
                more_missed = True
                break
            missed.append(tick)
    return Plan(
        until=until,
        skipped=sorted(missed[catch_up_limit:]),
        catch_up=sorted(missed[:catch_up_limit]),
        upcoming=upcoming,
        more_missed=more_missed,
    )


async def db_now(conn: psycopg.AsyncConnection) -> dt.datetime:
    return await db.fetch_value(conn, dt.datetime, "SELECT now() AS now")


async def dispatch_schedule(
    conn: psycopg.AsyncConnection,
    schedule_id: int,
    *,
    horizon: float | None = None,
    catch_up_limit: int | None = None,
) -> int:
    """Dispatch one schedule inside the caller's transaction; return the number of jobs deferred."""
    settings = get_settings()
    horizon = horizon_seconds(settings.schedules_dispatch_every) if horizon is None else horizon
    catch_up_limit = settings.schedules_catch_up_limit if catch_up_limit is None else catch_up_limit

    schedule = await store.get_schedule(conn, schedule_id, lock=True)
    if schedule is None or not schedule.active:
        return 0
    now = await db_now(conn)
    todo = plan(
        cron_module.Cron(schedule.cron, schedule.timezone),
        schedule.dispatched_until,
        now,
        horizon,
        catch_up_limit,
    )
    if todo.skipped:
        reason = f"missed while no dispatcher ran; catch-up limit is {catch_up_limit}"
        if todo.more_missed:
            reason += (
                f"; older missed ticks since {schedule.dispatched_until.isoformat()} not recorded"
            )
        await store.insert_skipped_runs(conn, schedule.id, todo.skipped, reason)
        logger.warning("schedule %s: %d missed ticks skipped", schedule.id, len(todo.skipped))

    created = await store.insert_cron_runs(conn, schedule.id, todo.catch_up + todo.upcoming)
    jobs: list[tuple[int, int]] = []
    for run_id, tick in created:
        job_id = await queue.defer(
            conn, EXECUTE_TASK, schedule_at=tick if tick > now else None, run_id=run_id
        )
        if job_id is not None:
            jobs.append((run_id, job_id))
    await store.set_job_ids(conn, jobs)
    if todo.until > schedule.dispatched_until:
        await store.advance_cursor(conn, schedule.id, todo.until)
    return len(jobs)


async def dispatch_due() -> int:
    """Dispatch every active schedule short of the horizon, one transaction each.

    A schedule that fails (say, a time zone removed from the system's database) is logged and
    left for the next dispatch; the others go ahead.
    """
    horizon = horizon_seconds(get_settings().schedules_dispatch_every)
    async with db.transaction() as conn:
        schedule_ids = await store.schedules_to_dispatch(conn, horizon)
    deferred = 0
    for schedule_id in schedule_ids:
        try:
            async with db.transaction() as conn:
                deferred += await dispatch_schedule(conn, schedule_id, horizon=horizon)
        except Exception:
            logger.exception("schedule %s: dispatch failed", schedule_id)
    return deferred
