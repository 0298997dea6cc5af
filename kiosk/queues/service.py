"""Queue controls for operators: list, pause, resume, set limits; defaults from the settings.

The JSON API, the dashboard and the `kiosk queues` command all come here, so the checks and the
audit entry (written in the same transaction as the change) are the same whichever surface the
operator used. Nothing here enforces anything: every worker's fetch reads `kiosk_queue_controls`
(kiosk/jobs, docs/workers.md "How queue controls are enforced").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
import psycopg_pool

from kiosk import audit, db
from kiosk.admin import jobs as admin_jobs
from kiosk.audit import Operator
from kiosk.errors import Invalid
from kiosk.queues import names, store
from kiosk.queues.store import QueueControl
from kiosk.validators import max_per_second_problem, max_running_problem, queue_name_problem

logger = logging.getLogger("kiosk.queues")

# The actor of limits applied from KIOSK_QUEUE_LIMITS: no operator can be called that (operator
# names never hold ':', kiosk.audit.actor_name), so a default never passes for an operator's value.
SETTINGS_ACTOR = "settings:KIOSK_QUEUE_LIMITS"
MAX_REASON = 200
# Between two tries to apply the defaults while the database is away or not migrated yet.
DEFAULTS_RETRY_SECONDS = 5.0


class InvalidQueue(Invalid):
    """A queue name, reason or limit that cannot be stored (HTTP 422)."""


@dataclass(frozen=True)
class QueueView:
    """A queue as operators see it: its control and its jobs (GET /admin/queues, the dashboard)."""

    name: str
    paused: bool
    paused_reason: str | None
    paused_by: str | None
    paused_at: dt.datetime | None
    max_per_second: float | None
    max_running: int | None
    limits_set_by: str | None
    limits_set_at: dt.datetime | None
    counts: dict[str, int]
    oldest_runnable_age_seconds: float | None
    succeeded_5m: int = 0
    failed_5m: int = 0
    succeeded_60m: int = 0
    failed_60m: int = 0
    estimated: list[str] = field(default_factory=list)

    @property
    def controllable(self) -> bool:
        """procrastinate takes any queue name; controls only those of QUEUE_NAME."""
        return queue_name_problem(self.name) is None


def check_name(queue: str) -> str:
    problem = queue_name_problem(queue)
    if problem:
        raise InvalidQueue(problem)
    return queue


def clean_reason(reason: str | None) -> str | None:
    """The reason as stored: trimmed, None when blank; at most MAX_REASON characters of text."""
    if reason is None:
        return None
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise InvalidQueue(f"reason must be at most {MAX_REASON} characters, got {len(reason)}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in reason):
        raise InvalidQueue("reason must be one line of text, without control characters")
    return reason or None


def check_limits(max_per_second: object, max_running: object) -> tuple[float | None, int | None]:
    for problem in (max_per_second_problem(max_per_second), max_running_problem(max_running)):
        if problem:
            raise InvalidQueue(problem)
    rate = float(max_per_second) if max_per_second is not None else None  # type: ignore[arg-type]
    running = int(max_running) if max_running is not None else None  # type: ignore[call-overload]
    return rate, running


def as_json(control: QueueControl) -> dict[str, Any]:
    return asdict(control)


async def list_queues(conn: psycopg.AsyncConnection) -> list[QueueView]:
    """Every queue known: those with jobs, those with a control row, and the kiosk's own."""
    stats = {queue.name: queue for queue in await admin_jobs.list_queues(conn)}
    controls = {control.name: control for control in await store.list_controls(conn)}
    views = []
    for name in sorted(set(stats) | set(controls) | set(names.KNOWN)):
        control = controls.get(name) or QueueControl.none(name)
        queue = stats.get(name) or admin_jobs.QueueStats(
            name, dict.fromkeys(admin_jobs.STATUSES, 0), None
        )
        views.append(
            QueueView(
                name=name,
                paused=control.paused,
                paused_reason=control.paused_reason,
                paused_by=control.paused_by,
                paused_at=control.paused_at,
                max_per_second=control.max_per_second,
                max_running=control.max_running,
                limits_set_by=control.limits_set_by,
                limits_set_at=control.limits_set_at,
                counts=queue.counts,
                oldest_runnable_age_seconds=queue.oldest_runnable_age_seconds,
                succeeded_5m=queue.succeeded_5m,
                failed_5m=queue.failed_5m,
                succeeded_60m=queue.succeeded_60m,
                failed_60m=queue.failed_60m,
                estimated=queue.estimated,
            )
        )
    return views


async def list_controls(conn: psycopg.AsyncConnection) -> list[QueueControl]:
    """The control of every known queue (without job counts: the metrics' cheap read)."""
    controls = {control.name: control for control in await store.list_controls(conn)}
    for name in names.KNOWN:
        controls.setdefault(name, QueueControl.none(name))
    return [controls[name] for name in sorted(controls)]


async def pause(
    conn: psycopg.AsyncConnection, queue: str, reason: str | None, by: Operator
) -> QueueControl:
    """No job of the queue starts any more; running ones finish, deferring still works."""
    check_name(queue)
    reason = clean_reason(reason)
    control = await store.pause(conn, queue, reason, by.name)
    await audit.record_by(conn, by, "queue.pause", f"queue:{queue}", {"reason": reason})
    return control


async def resume(conn: psycopg.AsyncConnection, queue: str, by: Operator) -> QueueControl:
    """Jobs of the queue start again. Resuming a queue that is not paused changes nothing (the
    audit log still shows the attempt)."""
    check_name(queue)
    resumed = await store.resume(conn, queue)
    await audit.record_by(
        conn, by, "queue.resume", f"queue:{queue}", {"was_paused": resumed is not None}
    )
    return resumed or await store.get_control(conn, queue)


async def set_limits(
    conn: psycopg.AsyncConnection,
    queue: str,
    max_per_second: object,
    max_running: object,
    by: Operator,
) -> QueueControl:
    """Replace both limits (None: no limit). From now on the operator owns them: a default from
    KIOSK_QUEUE_LIMITS no longer applies to this queue."""
    check_name(queue)
    rate, running = check_limits(max_per_second, max_running)
    before = await store.get_control(conn, queue)
    control = await store.set_limits(conn, queue, rate, running, by.name)
    await audit.record_by(
        conn,
        by,
        "queue.limits",
        f"queue:{queue}",
        {
            "max_per_second": rate,
            "max_running": running,
            "before": {"max_per_second": before.max_per_second, "max_running": before.max_running},
        },
    )
    return control


async def apply_defaults(
    conn: psycopg.AsyncConnection, limits: dict[str, tuple[float | None, int | None]]
) -> list[QueueControl]:
    """Give each queue of KIOSK_QUEUE_LIMITS its limits unless an operator set them, and clear
    those it set on queues it no longer lists; the queues changed, each audited."""
    changed: list[QueueControl] = []
    for queue, (rate, running) in sorted(limits.items()):
        control = await store.apply_default(conn, queue, rate, running, SETTINGS_ACTOR)
        if control is not None:
            changed.append(control)
    changed += await store.clear_dropped_defaults(conn, sorted(limits), SETTINGS_ACTOR)
    for control in changed:
        await audit.record(
            conn,
            actor=SETTINGS_ACTOR,
            action="queue.limits",
            target=f"queue:{control.name}",
            details={
                "max_per_second": control.max_per_second,
                "max_running": control.max_running,
                "source": "KIOSK_QUEUE_LIMITS",
            },
        )
    return changed


async def keep_applying_defaults(limits: dict[str, tuple[float | None, int | None]]) -> None:
    """`apply_defaults` once, when the database lets it: the API starts while the database is down
    or not migrated yet (its /readyz says so), so this tries again until it succeeds."""
    while True:
        try:
            async with db.transaction() as conn:
                changed = await apply_defaults(conn, limits)
        except (
            psycopg.OperationalError,
            psycopg_pool.PoolTimeout,
            psycopg.errors.UndefinedTable,
            psycopg.errors.UndefinedColumn,
        ) as exc:
            logger.info(
                "queue limits from KIOSK_QUEUE_LIMITS not applied yet (%s); trying again in %g s",
                type(exc).__name__,
                DEFAULTS_RETRY_SECONDS,
            )
            await asyncio.sleep(DEFAULTS_RETRY_SECONDS)
            continue
        except Exception:
            # A bug, not an outage: say so once; the API keeps serving without the defaults.
            logger.exception("queue limits from KIOSK_QUEUE_LIMITS could not be applied")
            return
        for control in changed:
            logger.info(
                "queue %s: limits from KIOSK_QUEUE_LIMITS: max_per_second=%s max_running=%s",
                control.name,
                control.max_per_second,
                control.max_running,
            )
        return
