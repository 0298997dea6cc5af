"""Schedule operations behind the admin API: each one validates, then writes in one transaction.

Writes that change when a schedule fires (a new cron or time zone, deactivation) drop the runs
created ahead that have not started and cancel their jobs in the same transaction; writes that
make it fire dispatch it at once, so the next ticks have their runs without waiting for the
dispatcher. Deleting a schedule removes it with its whole history (see docs/schedules.md).

Every change takes the operator who asks (`by`) and writes its audit entry on the same
connection, so the change and its record commit together; a refused change records nothing.
Audit details never hold header values (they may be secrets), a body or a URL's query string.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import db, queue
from kiosk.admin import audit
from kiosk.admin.audit import Operator
from kiosk.schedules import cron as cron_module
from kiosk.schedules import dispatcher, spec as spec_module, store
from kiosk.schedules.executor import loggable_url
from kiosk.schedules.dispatcher import EXECUTE_TASK
from kiosk.schedules.spec import InvalidSchedule, ScheduleSpec
from kiosk.settings import get_settings

NEXT_RUNS = 5
MAX_PAGE = 200
EDITABLE = frozenset(ScheduleSpec.__dataclass_fields__)


class ScheduleNotFound(LookupError):
    pass


class ScheduleConflict(Exception):
    """Another schedule has that name."""


@dataclass(frozen=True)
class ScheduleView:
    schedule: store.Schedule
    next_runs: list[dt.datetime]
    last_run: store.Run | None = None


@dataclass(frozen=True)
class RunsPage:
    runs: list[store.Run]
    next_cursor: str | None
    next_runs: list[dt.datetime]


def next_runs(schedule: store.Schedule, count: int = NEXT_RUNS) -> list[dt.datetime]:
    """The next ticks in the schedule's time zone; none while it is inactive."""
    if not schedule.active:
        return []
    cron = cron_module.Cron(schedule.cron, schedule.timezone)
    return cron.next_runs(dt.datetime.now(dt.UTC), count)


async def _view(conn: psycopg.AsyncConnection, schedule_id: int) -> ScheduleView:
    schedule = await store.get_schedule(conn, schedule_id)
    if schedule is None:
        raise ScheduleNotFound(schedule_id)
    last = await store.last_runs(conn, [schedule.id])
    return ScheduleView(schedule, next_runs(schedule), last.get(schedule.id))


def audit_details(spec: ScheduleSpec, fields: set[str] | None = None) -> dict[str, Any]:
    """What the audit log keeps of a schedule (only `fields` when given): nothing secret.

    Header names without their values, whether there is a body, the URL without its query.
    """
    details = {
        "name": spec.name, "cron": spec.cron, "timezone": spec.timezone, "method": spec.method,
        "url": loggable_url(spec.url), "headers": sorted(spec.headers), "body": spec.body is not None,
        "timeout_seconds": spec.timeout_seconds, "max_attempts": spec.max_attempts, "active": spec.active,
    }
    return details if fields is None else {k: v for k, v in details.items() if k in fields}


def _target(schedule_id: int) -> str:
    return f"schedule:{schedule_id}"


async def _cancel(conn: psycopg.AsyncConnection, job_ids: list[int]) -> None:
    for job_id in job_ids:
        await queue.cancel(conn, job_id)


async def create(spec: ScheduleSpec, *, by: Operator) -> ScheduleView:
    spec = await spec_module.validate(spec, get_settings().outbound_allowed)
    try:
        async with db.transaction() as conn:
            schedule = await store.insert_schedule(conn, spec)
            await dispatcher.dispatch_schedule(conn, schedule.id)
            await audit.record_by(conn, by, "schedule.create", _target(schedule.id), audit_details(schedule.spec))
            return await _view(conn, schedule.id)
    except psycopg.errors.UniqueViolation:
        raise ScheduleConflict(f"a schedule named {spec.name!r} already exists") from None


async def get(schedule_id: int) -> ScheduleView:
    async with db.transaction() as conn:
        return await _view(conn, schedule_id)


async def list_all() -> list[ScheduleView]:
    async with db.transaction() as conn:
        schedules = await store.list_schedules(conn)
        last = await store.last_runs(conn, [s.id for s in schedules])
    return [ScheduleView(s, next_runs(s), last.get(s.id)) for s in schedules]


def _merge(current: store.Schedule, changes: dict[str, Any]) -> ScheduleSpec:
    unknown = set(changes) - EDITABLE
    if unknown:
        raise InvalidSchedule(f"unknown fields: {', '.join(sorted(unknown))}")
    if "headers" in changes:
        changes = changes | {"headers": spec_module.unmask_headers(changes["headers"], current.headers)}
    return current.spec.evolve(**changes)


async def update(schedule_id: int, changes: dict[str, Any], *, by: Operator) -> ScheduleView:
    """Apply the given fields. Validation (with DNS) runs before the row is locked."""
    async with db.transaction() as conn:
        current = await store.get_schedule(conn, schedule_id)
    if current is None:
        raise ScheduleNotFound(schedule_id)
    await spec_module.validate(_merge(current, changes), get_settings().outbound_allowed)
    try:
        async with db.transaction() as conn:
            current = await store.get_schedule(conn, schedule_id, lock=True)
            if current is None:
                raise ScheduleNotFound(schedule_id)
            # Re-merge on the locked row: another edit may have landed meanwhile.
            new = spec_module.check_static(_merge(current, changes))
            retimed = (new.cron, new.timezone) != (current.cron, current.timezone)
            if retimed or not new.active:
                await _cancel(conn, await store.delete_pending_cron_runs(conn, schedule_id))
            reset = new.active and (retimed or not current.active)
            await store.update_schedule(conn, schedule_id, new, reset_cursor=reset)
            await dispatcher.dispatch_schedule(conn, schedule_id)
            await audit.record_by(conn, by, "schedule.update", _target(schedule_id),
                                  {"changed": sorted(changes), **audit_details(new, set(changes))})
            return await _view(conn, schedule_id)
    except psycopg.errors.UniqueViolation:
        raise ScheduleConflict(f"a schedule named {changes.get('name')!r} already exists") from None


async def delete(schedule_id: int, *, by: Operator) -> None:
    """Remove the schedule and its runs; jobs that have not started are cancelled with them."""
    async with db.transaction() as conn:
        schedule = await store.get_schedule(conn, schedule_id, lock=True)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        waiting = await store.waiting_job_ids(conn, schedule_id)
        await _cancel(conn, waiting)
        await store.delete_schedule(conn, schedule_id)
        await audit.record_by(conn, by, "schedule.delete", _target(schedule_id),
                              {**audit_details(schedule.spec, {"name", "cron", "url"}), "jobs_cancelled": len(waiting)})


async def run_now(schedule_id: int, *, by: Operator) -> tuple[store.Run, list[dt.datetime]]:
    """A manual run, due at once, whether the schedule is active or not."""
    async with db.transaction() as conn:
        schedule = await store.get_schedule(conn, schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        run = await store.insert_manual_run(conn, schedule_id)
        job_id = await queue.defer(conn, EXECUTE_TASK, run_id=run.id)
        await store.set_job_ids(conn, [(run.id, job_id)])
        run = await store.get_run(conn, run.id)
        await audit.record_by(conn, by, "schedule.run", _target(schedule_id),
                              {"name": schedule.name, "run_id": run.id, "job_id": job_id})
    return run, next_runs(schedule)


def encode_cursor(run: store.Run) -> str:
    raw = f"{run.scheduled_for.isoformat()}|{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, run_id = raw.split("|")
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError
        return when, int(run_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidSchedule("invalid cursor; use next_cursor from the previous page") from None


async def history(schedule_id: int, *, limit: int = 50, cursor: str | None = None) -> RunsPage:
    """Runs newest tick first (upcoming ones left out), `limit` per page, keyset-paginated."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidSchedule(f"limit must be between 1 and {MAX_PAGE}")
    before = decode_cursor(cursor) if cursor else None
    async with db.transaction() as conn:
        schedule = await store.get_schedule(conn, schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        runs = await store.list_runs(conn, schedule_id, limit=limit + 1, before=before)
    more = len(runs) > limit
    runs = runs[:limit]
    return RunsPage(runs, encode_cursor(runs[-1]) if more else None, next_runs(schedule))
