"""Inspect and act on procrastinate's jobs: queues, jobs, workers, periodic tasks.

Reads go straight to procrastinate's tables (`kiosk/admin/queries.sql`); state changes use
procrastinate's own SQL functions where one exists, so its triggers record the events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from kiosk import db, progress
from kiosk.errors import Conflict, NotFound
from kiosk.jobs import outcomes
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.admin")

STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")
RETRYABLE = ("failed", "cancelled", "aborted")
CANCELLABLE = ("todo", "doing")
MAX_PAGE = 500
MAX_BULK = 10_000
# Queue counts are exact up to these; a larger one is the planner's estimate (QueueStats.estimated).
# Finished history grows without bound, so its exact count stops early.
EXACT_COUNT = 10_000
EXACT_SUCCEEDED_COUNT = 1_000


class JobNotFound(NotFound):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class JobStateConflict(Conflict):
    """The job's state does not allow the action (HTTP 409)."""


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    queue: str | None = None
    task: str | None = None
    text: str | None = None  # substring of the JSON arguments
    deferred_after: dt.datetime | None = None
    deferred_before: dt.datetime | None = None
    min_attempts: int | None = None  # 1: jobs that ran at least once (failed ones waiting to retry)

    def is_empty(self) -> bool:
        return all(value is None for value in vars(self).values())

    def describe(self) -> dict[str, Any]:
        """The fields that are set, JSON-ready, for the audit log."""
        return {
            key: value.isoformat() if isinstance(value, dt.datetime) else value
            for key, value in vars(self).items()
            if value is not None
        }


@dataclass(frozen=True)
class QueueStats:
    name: str
    counts: dict[str, int]
    oldest_runnable_age_seconds: float | None
    succeeded_5m: int = 0
    failed_5m: int = 0
    succeeded_60m: int = 0
    failed_60m: int = 0
    estimated: list[str] = field(default_factory=list)  # statuses whose count is an estimate


@dataclass
class JobPage:
    jobs: list[dict[str, Any]]
    next_cursor: int | None


@dataclass
class BulkResult:
    matched: int
    changed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


# Fixed clauses only: user input travels as parameters, never as SQL text.
_CLAUSES = {
    "status": "j.status = %(status)s::procrastinate_job_status",
    "queue": "j.queue_name = %(queue)s",
    "task": "j.task_name = %(task)s",
    "text": "j.args::text ILIKE %(text)s ESCAPE '\\'",
    "min_attempts": "j.attempts >= %(min_attempts)s",
    "min_id": "j.id >= %(min_id)s",
    "max_id": "j.id <= %(max_id)s",
    "before": "j.id < %(before)s",
    "statuses": "j.status::text = ANY(%(statuses)s)",
}


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _filter_params(conn: psycopg.AsyncConnection, flt: JobFilter) -> dict[str, Any] | None:
    """Parameters for the filter, or None when it can match nothing (empty time range)."""
    params: dict[str, Any] = {}
    if flt.status is not None:
        params["status"] = flt.status
    if flt.queue is not None:
        params["queue"] = flt.queue
    if flt.task is not None:
        params["task"] = flt.task
    if flt.text:
        params["text"] = _like_pattern(flt.text)
    if flt.min_attempts is not None:
        params["min_attempts"] = flt.min_attempts
    # Job ids grow with time: a deferral-time range becomes an id range (the primary key serves it).
    if flt.deferred_after is not None:
        row = await db.fetch_row(
            conn, QUERIES["first_job_deferred_since"], {"at": flt.deferred_after}
        )
        if row["job_id"] is None:
            return None
        params["min_id"] = row["job_id"]
    if flt.deferred_before is not None:
        row = await db.fetch_row(
            conn, QUERIES["last_job_deferred_before"], {"at": flt.deferred_before}
        )
        if row["job_id"] is None:
            return None
        params["max_id"] = row["job_id"]
    return params


def _compose(query_name: str, params: dict[str, Any]) -> sql.Composed:
    """The query with the filter's clauses; run it with prepare=False (kiosk.db.fetch_all: why)."""
    clauses = [sql.SQL(_CLAUSES[key]) for key in _CLAUSES if key in params]
    where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("true")
    return sql.SQL(QUERIES[query_name]).format(filters=where)


async def bound_statements(conn: psycopg.AsyncConnection, seconds: float) -> None:
    """Cancel any statement of this transaction that runs longer (psycopg.errors.QueryCanceled).

    A text search matching few jobs reads the whole table; an operator's page should give up
    rather than hold a connection for long.
    """
    await conn.execute(QUERIES["set_statement_timeout"], {"ms": str(int(seconds * 1000))})


async def list_queues(
    conn: psycopg.AsyncConnection,
    *,
    exact_up_to: int = EXACT_COUNT,
    exact_succeeded_up_to: int = EXACT_SUCCEEDED_COUNT,
) -> list[QueueStats]:
    """Every queue with its jobs per status, oldest runnable job and recent throughput.

    A count above its cap is estimated, so the cost stays flat however much history the table
    keeps (docs/dashboard.md, "With a million jobs").
    """
    names = [r["name"] for r in await db.fetch_all(conn, QUERIES["queue_names"])]
    counts, estimated = await _queue_counts(conn, names, exact_up_to, exact_succeeded_up_to)
    oldest = {
        r["queue_name"]: r["age_seconds"]
        for r in await db.fetch_all(conn, QUERIES["queue_oldest_runnable"], {"queues": names})
    }
    rates = {r["queue_name"]: r for r in await db.fetch_all(conn, QUERIES["queue_throughput"])}
    names = sorted(set(counts) | set(rates))
    result = []
    for name in names:
        rate = rates.get(name, {})
        age = oldest.get(name)
        result.append(
            QueueStats(
                name=name,
                counts=counts.get(name, dict.fromkeys(STATUSES, 0)),
                oldest_runnable_age_seconds=max(0.0, float(age)) if age is not None else None,
                succeeded_5m=rate.get("succeeded_5m", 0),
                failed_5m=rate.get("failed_5m", 0),
                succeeded_60m=rate.get("succeeded_60m", 0),
                failed_60m=rate.get("failed_60m", 0),
                estimated=estimated.get(name, []),
            )
        )
    return result


async def _queue_counts(
    conn: psycopg.AsyncConnection, names: list[str], cap: int, succeeded_cap: int
) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """Counts per queue and status, and per queue the statuses whose count was estimated."""
    counts = {name: dict.fromkeys(STATUSES, 0) for name in names}
    estimated: dict[str, list[str]] = {}
    params = {
        "queues": names,
        "statuses": list(STATUSES),
        "cap": cap,
        "succeeded_cap": succeeded_cap,
    }
    for row in await db.fetch_all(conn, QUERIES["queue_counts"], params):
        name, status, count = row["queue_name"], row["status"], row["count"]
        limit = succeeded_cap if status == "succeeded" else cap
        if count > limit:
            # At least limit + 1 are there whatever stale statistics say.
            count = max(limit + 1, await _estimate(conn, name, status))
            estimated.setdefault(name, []).append(status)
        counts[name][status] = count
    return counts, estimated


async def _estimate(conn: psycopg.AsyncConnection, queue: str, status: str) -> int:
    plan = await db.fetch_value(
        conn,
        list,
        QUERIES["estimate_queue_count"],
        {"queue": queue, "status": status},
        prepare=False,
    )
    return int(plan[0]["Plan"]["Plan Rows"])


async def throughput_series(
    conn: psycopg.AsyncConnection, minutes: int = 60
) -> list[dict[str, Any]]:
    return await db.fetch_all(conn, QUERIES["throughput_series"], {"minutes": minutes})


async def list_jobs(
    conn: psycopg.AsyncConnection, flt: JobFilter, *, before: int | None = None, limit: int = 50
) -> JobPage:
    params = await _filter_params(conn, flt)
    if params is None:
        return JobPage([], None)
    if before is not None:
        params["before"] = before
    params["limit"] = max(1, min(limit, MAX_PAGE))
    rows = await db.fetch_all(conn, _compose("list_jobs", params), params, prepare=False)
    next_cursor = rows[-1]["id"] if len(rows) == params["limit"] else None
    return JobPage(rows, next_cursor)


async def count_jobs(conn: psycopg.AsyncConnection, flt: JobFilter, *, cap: int = MAX_BULK) -> int:
    """How many jobs match, counting no further than `cap` (a bulk action's reach)."""
    params = await _filter_params(conn, flt)
    if params is None:
        return 0
    params["cap"] = cap
    return await db.fetch_value(conn, int, _compose("count_jobs", params), params, prepare=False)


async def queue_and_task_names(conn: psycopg.AsyncConnection) -> tuple[list[str], list[str]]:
    """Distinct queue and task names, read from their indexes (fast on a big table)."""
    queues = [r["name"] for r in await db.fetch_all(conn, QUERIES["queue_names"])]
    tasks = [r["name"] for r in await db.fetch_all(conn, QUERIES["task_names"])]
    return queues, tasks


async def get_job(conn: psycopg.AsyncConnection, job_id: int) -> dict[str, Any]:
    job = await db.fetch_one(conn, QUERIES["job"], {"job_id": job_id})
    if job is None:
        raise JobNotFound(job_id)
    job["events"] = await db.fetch_all(conn, QUERIES["job_events"], {"job_id": job_id})
    reported = await progress.get(conn, job_id)
    job["progress"] = asdict(reported) if reported else None
    job["outcomes"] = [asdict(o) for o in await outcomes.for_job(conn, job_id)]
    return job


async def _locked(conn: psycopg.AsyncConnection, job_id: int) -> dict[str, Any]:
    row = await db.fetch_one(conn, QUERIES["lock_job"], {"job_id": job_id})
    if row is None:
        raise JobNotFound(job_id)
    return row


async def retry_job(conn: psycopg.AsyncConnection, job_id: int) -> None:
    """failed, cancelled or aborted -> todo, to run again as soon as a worker is free."""
    job = await _locked(conn, job_id)
    if job["status"] not in RETRYABLE:
        raise JobStateConflict(
            f"job {job_id} is {job['status']}; only {', '.join(RETRYABLE)} jobs can be retried"
        )
    try:
        async with conn.transaction():
            query = "retry_failed_job" if job["status"] == "failed" else "retry_finished_job"
            await conn.execute(QUERIES[query], {"job_id": job_id})
    except psycopg.errors.UniqueViolation:
        raise JobStateConflict(
            f"job {job_id} cannot be retried: another job with queueing lock "
            f"{job['queueing_lock']!r} is already waiting"
        ) from None


async def cancel_job(conn: psycopg.AsyncConnection, job_id: int) -> str:
    """todo -> cancelled; doing -> abort requested. Returns what happened."""
    job = await _locked(conn, job_id)
    if job["status"] not in CANCELLABLE:
        raise JobStateConflict(
            f"job {job_id} is {job['status']}; only todo or doing jobs can be cancelled"
        )
    await conn.execute(QUERIES["cancel_job"], {"job_id": job_id, "abort": job["status"] == "doing"})
    return "cancelled" if job["status"] == "todo" else "abort_requested"


async def _bulk(
    conn: psycopg.AsyncConnection,
    flt: JobFilter,
    allowed: tuple[str, ...],
    action: Callable[[psycopg.AsyncConnection, int], Awaitable[object]],
) -> BulkResult:
    params = await _filter_params(conn, flt)
    if params is None:
        return BulkResult(0)
    params["statuses"] = list(
        allowed if flt.status is None else [s for s in allowed if s == flt.status]
    )
    params["limit"] = MAX_BULK
    ids = [
        r["id"]
        for r in await db.fetch_all(conn, _compose("select_job_ids", params), params, prepare=False)
    ]
    result = BulkResult(len(ids))
    for job_id in ids:
        try:
            async with conn.transaction():
                await action(conn, job_id)
        except (JobStateConflict, JobNotFound):
            result.skipped.append(job_id)
        else:
            result.changed.append(job_id)
    return result


async def bulk_retry(conn: psycopg.AsyncConnection, flt: JobFilter) -> BulkResult:
    return await _bulk(conn, flt, RETRYABLE, retry_job)


async def bulk_cancel(conn: psycopg.AsyncConnection, flt: JobFilter) -> BulkResult:
    return await _bulk(conn, flt, CANCELLABLE, cancel_job)


async def list_workers(
    conn: psycopg.AsyncConnection,
    stale_after: float,
    *,
    after: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Workers by id, those after `after`; all when `limit` is None (the overview's counts)."""
    rows = await db.fetch_all(conn, QUERIES["workers"], {"after": after, "limit": limit})
    for row in rows:
        row["heartbeat_age_seconds"] = float(row["heartbeat_age_seconds"])
        row["stalled"] = row["heartbeat_age_seconds"] > stale_after
    return rows
