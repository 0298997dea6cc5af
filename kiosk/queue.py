"""The procrastinate app and the one way application code defers a job.

Rule for the whole code base: domain code defers jobs **by task name**, on the connection of the
transaction that makes the change (`defer(conn, inbox.PROCESS_TASK, ...)`). The name is a constant
owned by the domain module, and the `@app.task` in `tasks/` uses the same constant. Job code in
`tasks/` imports the domain, never the other way round, so there is no import circle. The app is
re-exported as `tasks.app` for `procrastinate --app=tasks.app worker`. One exception, measured: the
webhook inbox inserts its jobs in the same SQL statement as its rows (one round trip per batch of
notifications), with the queue and priority of its task from `job_fields`.

A name that is not a registered task fails loudly (`UnknownTask`), whatever its namespace, instead
of queueing a job no worker runs. Tasks register by import: the app's import paths (`tasks`,
`periodic`) are imported on the first check. The tests' and benchmarks' probe jobs are tasks too,
registered by their own modules (tests/support/probe_tasks.py, bench/apps.py) in the processes
that defer them.

The app is a `KioskApp` (kiosk/jobs/app.py): `@app.task(..., timeout=...)`, shutdown-safe retries,
worker options from KIOSK_WORKER_*; and every job, sync or async, runs inside the outcome
middleware that records each attempt in `job_outcomes` (docs/workers.md).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from procrastinate import PsycopgConnector, exceptions

from kiosk import db, logs, tracing
from kiosk.jobs.app import KioskApp
from kiosk.jobs.context import job_context_middleware
from kiosk.jobs.maintenance import release_queueing_lock
from kiosk.jobs.outcomes import record_outcome
from kiosk.settings import load_or_exit
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.jobs")

__all__ = [
    "JobFields",
    "UnknownTask",
    "app",
    "cancel",
    "check_task_name",
    "defer",
    "job_fields",
    "release_queueing_lock",
]


def _worker_pool(**kwargs: Any) -> Any:
    """The worker's pool. Called right after procrastinate's CLI configured logging (its level
    stays), so this is where KIOSK_LOG_FORMAT=json turns its lines, and every later one, into
    JSON. With tracing on, it is set up first: SQL is traced on connections made after that."""
    logs.configure(load_or_exit().log_format)
    if tracing.ENABLED:
        try:
            tracing.setup("kiosk-worker")
        except tracing.TracingUnavailable as exc:
            raise SystemExit(f"kiosk: {exc}") from None
    return db.create_pool(role="worker", **kwargs)


# The pool is created when the app opens (worker) or handed over by the API, never at import:
# `tasks.app` stays importable without a database. Its connections are named `kiosk-worker:...`
# (kiosk worker-health finds a host's workers by that name).
app = KioskApp(
    connector=PsycopgConnector(pool_factory=_worker_pool),
    import_paths=["tasks", "periodic"],
    worker_defaults={
        # Outermost first: the job's log context and trace span hold its outcome bookkeeping.
        "worker_middleware": [job_context_middleware, record_outcome],
        # NOTIFY wakes workers for jobs due now; a job due later (schedule_at, retry backoff) is
        # found by polling, so this bounds how late it starts (procrastinate's default is 5 s).
        "fetch_job_polling_interval": 1.0,
    },
)


class UnknownTask(LookupError):
    """A defer named no registered task: a typo, which would otherwise queue a job no worker runs.
    A programming error, not a domain error: it is never answered as 4xx."""


def import_tasks() -> None:
    """Import tasks/ and periodic.py (the app's import_paths): every task is then registered."""
    # procrastinate leaves App.perform_import_paths unannotated; it takes nothing, returns None.
    cast(Callable[[], None], app.perform_import_paths)()


def check_task_name(task_name: str) -> None:
    """Raise UnknownTask when no task named `task_name` is registered on the app."""
    import_tasks()
    if task_name not in app.tasks:
        raise UnknownTask(
            f"no task named {task_name!r} is registered (tasks/, periodic.py): a job "
            "deferred under that name would never run"
        )


async def defer(
    conn: psycopg.AsyncConnection,
    task_name: str,
    *,
    queueing_lock: str | None = None,
    lock: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    schedule_in: dict[str, int] | None = None,
    schedule_at: datetime.datetime | None = None,
    **task_kwargs: Any,
) -> int | None:
    """Defer a job in the caller's transaction; return its id.

    A `queueing_lock` clash (a job with that lock is already waiting) returns None instead of
    raising: the waiting job will do the work. The insert runs inside a savepoint so that the clash
    does not abort the caller's transaction. The waiting job is then held (a row lock, which
    workers' `FOR UPDATE SKIP LOCKED` fetch passes over) until the caller's transaction ends, so
    it cannot start without seeing the caller's rows; if it started meanwhile, a job is deferred
    after all.
    """
    check_task_name(task_name)
    options: dict[str, Any] = {"connection": conn}
    for key, value in (
        ("queueing_lock", queueing_lock),
        ("lock", lock),
        ("queue", queue),
        ("priority", priority),
        ("schedule_in", schedule_in),
        ("schedule_at", schedule_at),
    ):
        if value is not None:
            options[key] = value
    deferrer = app.configure_task(task_name, **options)
    for _ in range(_CLASHES):
        try:
            async with conn.transaction():
                job_id = await deferrer.defer_async(**task_kwargs)
                if tracing.ENABLED:
                    await _save_traces(conn, [job_id])
                return job_id
        except exceptions.AlreadyEnqueued:
            pass
        except exceptions.ConnectorException as exc:
            raise _unwrapped(exc) from None
        cursor = await conn.execute(QUERIES["hold_waiting_job"], {"queueing_lock": queueing_lock})
        if await cursor.fetchone():
            return None
    return None


# A clash, then no waiting job (it started), then a clash again...: give up after this many.
_CLASHES = 5


def _unwrapped(exc: exceptions.ConnectorException) -> BaseException:
    """The psycopg error procrastinate wrapped, so callers see a database outage as one (503)."""
    return exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc


@dataclass(frozen=True)
class JobFields:
    """What a job row takes from its task: for SQL that inserts the jobs of a batch itself."""

    task_name: str
    queue: str
    priority: int


@functools.cache
def job_fields(task_name: str) -> JobFields:
    """The queue and priority a job of `task_name` is deferred with (UnknownTask on a typo).

    The webhook inbox writes its rows and their jobs in one SQL statement
    (`kiosk_store_notifications_v1`, docs/benchmarks.md) instead of calling `defer`: its jobs take
    the task's queue and priority from here, as procrastinate's defer would.
    """
    check_task_name(task_name)
    job = app.configure_task(task_name).job
    return JobFields(job.task_name, job.queue, job.priority)


async def _save_traces(
    conn: psycopg.AsyncConnection,
    job_ids: Sequence[int | None],
    carriers: Sequence[dict[str, str] | None] | None = None,
) -> None:
    """Tracing on: the trace context travels with the jobs (kiosk/tracing/jobs.py)."""
    from kiosk.tracing import jobs as traced

    await traced.save(conn, job_ids, carriers)


async def cancel(conn: psycopg.AsyncConnection, job_id: int) -> bool:
    """Delete a job that has not started yet, in the caller's transaction.

    False when the job is already running, finished or gone; a running job is left to finish.
    """
    return await app.job_manager.cancel_job_by_id_async(job_id, delete_job=True, connection=conn)
