"""Schedule operations behind the admin API: each one validates, then writes in one transaction.

Writes that change when a schedule fires (a new cron or time zone, deactivation) drop the runs
created ahead that have not started and cancel their jobs in the same transaction; writes that
make it fire dispatch it at once, so the next ticks have their runs without waiting for the
dispatcher. Deleting a schedule removes it with its whole history (see docs/schedules.md).

Every change takes the operator who asks (`by`) and writes its audit entry on the same
connection, so the change and its record commit together; a refused change records nothing.
Audit details never hold header values (they may be secrets), a body or a URL's query string.

Secrets (docs/schedules.md): an edit may send back the mask of a stored secret (a header value,
the body, or the URL as shown with its query values masked) to keep it. An edit that moves the
URL to another origin (scheme, host, port) must send every secret it keeps again: a mask or an
omitted field would hand the stored secrets to the new host, so it is refused (422).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import audit, db, netguard, queue, secretbox
from kiosk import cron as cron_module
from kiosk.audit import Operator
from kiosk.errors import Conflict, NotFound
from kiosk.schedules import dispatcher, store
from kiosk.schedules import spec as spec_module
from kiosk.schedules.dispatcher import EXECUTE_TASK
from kiosk.schedules.executor import loggable_url
from kiosk.schedules.spec import MASK, InvalidSchedule, ScheduleSpec
from kiosk.settings import get_settings

NEXT_RUNS = 5
MAX_PAGE = 200
EDITABLE = frozenset(ScheduleSpec.__dataclass_fields__)


class ScheduleNotFound(NotFound):
    def __init__(self, schedule_id: int) -> None:
        super().__init__(f"schedule {schedule_id} not found")
        self.schedule_id = schedule_id


class ScheduleConflict(Conflict):
    """Another schedule has that name."""


@dataclass(frozen=True)
class ScheduleView:
    schedule: store.Schedule
    next_runs: list[dt.datetime]
    last_run: store.Run | None = None


@dataclass(frozen=True)
class SchedulesPage:
    views: list[ScheduleView]
    next_cursor: str | None


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
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "method": spec.method,
        "url": loggable_url(spec.url),
        "headers": sorted(spec.headers),
        "body": spec.body is not None,
        "timeout_seconds": spec.timeout_seconds,
        "max_attempts": spec.max_attempts,
        "active": spec.active,
    }
    return details if fields is None else {k: v for k, v in details.items() if k in fields}


def _target(schedule_id: int) -> str:
    return f"schedule:{schedule_id}"


async def _cancel(conn: psycopg.AsyncConnection, job_ids: list[int]) -> None:
    for job_id in job_ids:
        await queue.cancel(conn, job_id)


def _keys_for(spec: ScheduleSpec) -> secretbox.Keyring:
    """The keyring, refusing at once (503) a spec with secrets on a kiosk without a key."""
    keys = secretbox.keyring()
    if not keys.available and spec_module.has_secrets(spec):
        raise secretbox.SecretKeyMissing(
            "secret header values, bodies or query strings of schedules"
        )
    return keys


async def create(spec: ScheduleSpec, *, by: Operator) -> ScheduleView:
    spec = spec_module.check_static(spec)
    keys = _keys_for(spec)
    spec = await spec_module.validate(spec, get_settings().outbound_allowed)
    try:
        async with db.transaction() as conn:
            schedule = await store.insert_schedule(conn, keys, spec)
            await dispatcher.dispatch_schedule(conn, schedule.id)
            await audit.record_by(
                conn, by, "schedule.create", _target(schedule.id), audit_details(spec)
            )
            return await _view(conn, schedule.id)
    except psycopg.errors.UniqueViolation:
        raise ScheduleConflict(f"a schedule named {spec.name!r} already exists") from None


async def get(schedule_id: int) -> ScheduleView:
    async with db.transaction() as conn:
        return await _view(conn, schedule_id)


def encode_id_cursor(schedule_id: int) -> str:
    return base64.urlsafe_b64encode(f"id|{schedule_id}".encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, schedule_id = raw.split("|")
        if kind != "id":
            raise ValueError
        return int(schedule_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidSchedule("invalid cursor; use next_cursor from the previous page") from None


async def list_page(*, limit: int = 50, cursor: str | None = None) -> SchedulesPage:
    """Schedules oldest first, `limit` per page, keyset-paginated by id."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidSchedule(f"limit must be between 1 and {MAX_PAGE}")
    after = decode_id_cursor(cursor) if cursor else None
    async with db.transaction() as conn:
        schedules = await store.list_schedules(conn, limit=limit + 1, after_id=after)
        schedules, more = schedules[:limit], len(schedules) > limit
        last = await store.last_runs(conn, [s.id for s in schedules])
    views = [ScheduleView(s, next_runs(s), last.get(s.id)) for s in schedules]
    return SchedulesPage(views, encode_id_cursor(schedules[-1].id) if more else None)


def _merge(
    current: store.Schedule, changes: dict[str, Any], keys: secretbox.Keyring
) -> ScheduleSpec:
    """The schedule after the changes, secrets sent back as masks restored from storage.

    Refuses (InvalidSchedule) to carry stored secrets to another origin, and to mark plain a
    header whose secret value is kept rather than sent.
    """
    unknown = set(changes) - EDITABLE
    if unknown:
        raise InvalidSchedule(f"unknown fields: {', '.join(sorted(unknown))}")
    real = current.unseal(keys)
    changes = dict(changes)
    stored_secret = {name.lower() for name in current.secret_headers}
    kept: list[str] = []  # stored secrets this edit keeps without sending them
    if "headers" in changes:
        sent = changes["headers"]
        kept += [
            name for name, value in sent.items() if value == MASK and name.lower() in stored_secret
        ]
        changes["headers"] = spec_module.unmask_headers(sent, real.headers)
        if "plain_headers" not in changes:  # marks of headers still there stay
            names = {name.lower() for name in sent}
            changes["plain_headers"] = tuple(n for n in real.plain_headers if n in names)
    else:
        kept += current.secret_headers
    if "body" in changes:
        if changes["body"] == MASK and real.body is not None:
            changes["body"] = real.body
            kept.append("the body")
    elif real.body is not None:
        kept.append("the body")
    if changes.get("url") == current.url:  # the URL as shown, sent back: keep the real one
        changes["url"] = real.url
    elif "url" not in changes and real.url != current.url:
        kept.append("the query string")
    new = real.evolve(**changes)
    marked = {name.lower() for name in changes.get("plain_headers") or ()} - set(real.plain_headers)
    revealed = sorted(marked & {k.lower() for k in kept})
    if revealed:
        raise InvalidSchedule(
            f"header {revealed[0]!r} holds a stored secret; send its value to mark it plain"
        )
    try:
        moved = spec_module.origin(new.url) != spec_module.origin(real.url)
    except netguard.UnsafeURL:
        moved = False  # a malformed URL: validation says why
    if moved and kept:
        raise InvalidSchedule(
            "the url moves to another origin (scheme, host or port): send the secrets again, "
            f"stored ones are not sent to a new host (kept: {', '.join(kept)})"
        )
    return new


async def update(schedule_id: int, changes: dict[str, Any], *, by: Operator) -> ScheduleView:
    """Apply the given fields. Validation (with DNS) runs before the row is locked."""
    async with db.transaction() as conn:
        current = await store.get_schedule(conn, schedule_id)
    if current is None:
        raise ScheduleNotFound(schedule_id)
    keys = secretbox.keyring()
    merged = spec_module.check_static(_merge(current, changes, keys))
    _keys_for(merged)
    await spec_module.validate(merged, get_settings().outbound_allowed)
    try:
        async with db.transaction() as conn:
            current = await store.get_schedule(conn, schedule_id, lock=True)
            if current is None:
                raise ScheduleNotFound(schedule_id)
            # Re-merge on the locked row: another edit may have landed meanwhile.
            new = spec_module.check_static(_merge(current, changes, keys))
            retimed = (new.cron, new.timezone) != (current.cron, current.timezone)
            if retimed or not new.active:
                await _cancel(conn, await store.delete_pending_cron_runs(conn, schedule_id))
            reset = new.active and (retimed or not current.active)
            await store.update_schedule(conn, keys, schedule_id, new, reset_cursor=reset)
            await dispatcher.dispatch_schedule(conn, schedule_id)
            await audit.record_by(
                conn,
                by,
                "schedule.update",
                _target(schedule_id),
                {"changed": sorted(changes), **audit_details(new, set(changes))},
            )
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
        await audit.record_by(
            conn,
            by,
            "schedule.delete",
            _target(schedule_id),
            {
                **audit_details(schedule.masked_spec, {"name", "cron", "url"}),
                "jobs_cancelled": len(waiting),
            },
        )


async def run_now(schedule_id: int, *, by: Operator) -> tuple[store.Run, list[dt.datetime]]:
    """A manual run, due at once, whether the schedule is active or not."""
    async with db.transaction() as conn:
        schedule = await store.get_schedule(conn, schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        run = await store.insert_manual_run(conn, schedule_id)
        job_id = await queue.defer(conn, EXECUTE_TASK, run_id=run.id)
        await store.set_job_ids(conn, [(run.id, job_id)])
        fresh = await store.get_run(conn, run.id)
        if fresh is None:  # inserted above, in this transaction
            raise db.MissingRow(f"schedule run {run.id} is gone in the transaction that made it")
        run = fresh
        await audit.record_by(
            conn,
            by,
            "schedule.run",
            _target(schedule_id),
            {"name": schedule.name, "run_id": run.id, "job_id": job_id},
        )
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


async def rotate_secrets(keys: secretbox.Keyring) -> tuple[int, int]:
    """Re-encrypt every schedule's secrets with the first key: (re-encrypted, holding secrets).

    One short transaction per schedule; a row edited meanwhile was encrypted with the first key
    by its edit, so it is left as is. Running it again re-encrypts nothing.
    """
    async with db.transaction() as conn:
        sealed = await store.sealed_schedules(conn)
    rotated = 0
    for schedule_id, token in sealed:
        if keys.primary_encrypted(token):
            continue
        new = keys.rotate(token)
        async with db.transaction() as conn:
            rotated += await store.reseal(conn, schedule_id, token, new)
    return rotated, len(sealed)
