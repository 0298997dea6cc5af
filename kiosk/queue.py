"""The procrastinate app and the one way application code defers a job.

Rule for the whole code base: domain code defers jobs **by task name**, on the connection of the
transaction that makes the change (`defer(conn, inbox.PROCESS_TASK, ...)`). The name is a constant
owned by the domain module, and the `@app.task` in `tasks/` uses the same constant. Job code in
`tasks/` imports the domain, never the other way round, so there is no import circle. The app is
re-exported as `tasks.app` for `procrastinate --app=tasks.app worker`.

A misspelt name fails loudly (`UnknownTask`) instead of queueing a job no worker runs: a name in
one of the kiosk's task namespaces (`payments.`, `orders.`, ... : the part before the first dot
of a registered task) must be a registered task. Names in other namespaces pass: the tests' and
benchmarks' probe jobs, run by probe workers that register them.

The app is a `KioskApp` (kiosk/jobs/app.py): `@app.task(..., timeout=...)`, shutdown-safe retries,
worker options from KIOSK_WORKER_*; and every job, sync or async, runs inside the outcome
middleware that records each attempt in `job_outcomes` (docs/workers.md).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import psycopg
from procrastinate import PsycopgConnector, exceptions

from kiosk import db
from kiosk.jobs.app import KioskApp
from kiosk.jobs.maintenance import release_queueing_lock
from kiosk.jobs.outcomes import record_outcome
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.jobs")

__all__ = [
    "UnknownTask",
    "app",
    "cancel",
    "check_task_name",
    "defer",
    "defer_many",
    "import_tasks",
    "release_queueing_lock",
]

# The pool is created when the app opens (worker) or handed over by the API, never at import:
# `tasks.app` stays importable without a database. Its connections are named `kiosk-worker:...`
# (kiosk worker-health finds a host's workers by that name).
app = KioskApp(
    connector=PsycopgConnector(pool_factory=functools.partial(db.create_pool, role="worker")),
    import_paths=["tasks", "periodic"],
    worker_defaults={
        "worker_middleware": [record_outcome],
        # NOTIFY wakes workers for jobs due now; a job due later (schedule_at, retry backoff) is
        # found by polling, so this bounds how late it starts (procrastinate's default is 5 s).
        "fetch_job_polling_interval": 1.0,
    },
)


class UnknownTask(LookupError):
    """A defer named no registered task of a kiosk namespace: a typo, which would otherwise queue
    a job no worker runs. A programming error, not a domain error: it is never answered as 4xx."""


def import_tasks() -> None:
    """Import tasks/ and periodic.py (the app's import_paths): every task is then registered."""
    # procrastinate leaves App.perform_import_paths unannotated; it takes nothing, returns None.
    cast(Callable[[], None], app.perform_import_paths)()


@functools.cache
def _namespaces() -> frozenset[str]:
    """The namespaces of the kiosk's own tasks: those defined in tasks/ and periodic.py."""
    import_tasks()
    return frozenset(
        name.partition(".")[0]
        for name, task in app.tasks.items()
        if task.func.__module__.partition(".")[0] in ("tasks", "periodic")
    )


def check_task_name(task_name: str) -> None:
    """Raise UnknownTask when `task_name` is in a kiosk task namespace but is not a task."""
    namespaces = _namespaces()  # first: it registers every task
    if task_name in app.tasks or task_name.partition(".")[0] not in namespaces:
        return
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
                return await deferrer.defer_async(**task_kwargs)
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


async def defer_many(
    conn: psycopg.AsyncConnection,
    task_name: str,
    jobs: Sequence[tuple[str | None, str | None, Mapping[str, Any]]],
) -> list[int | None]:
    """Defer jobs of one task in the caller's transaction, each `(queueing_lock, lock, kwargs)`.

    One statement for all (procrastinate's batch defer) when no queueing lock clashes; on a clash
    the batch is undone in its savepoint and every job is deferred alone, so only the clashing ones
    get None (as `defer` does) and the others still get their job. Concurrent callers should pass
    jobs sorted by queueing lock, so that two batches never wait on each other in opposite orders.
    """
    check_task_name(task_name)
    if not jobs:
        return []
    made = [
        app.configure_task(
            task_name, connection=conn, queueing_lock=queueing_lock, lock=lock
        ).make_new_job(**kwargs)
        for queueing_lock, lock, kwargs in jobs
    ]
    try:
        async with conn.transaction():
            deferred = await app.job_manager.batch_defer_jobs_async(made, connection=conn)
        return [job.id for job in deferred]
    except exceptions.AlreadyEnqueued:
        pass
    except exceptions.ConnectorException as exc:
        raise _unwrapped(exc) from None
    return [
        await defer(conn, task_name, queueing_lock=queueing_lock, lock=lock, **kwargs)
        for queueing_lock, lock, kwargs in jobs
    ]


async def cancel(conn: psycopg.AsyncConnection, job_id: int) -> bool:
    """Delete a job that has not started yet, in the caller's transaction.

    False when the job is already running, finished or gone; a running job is left to finish.
    """
    return await app.job_manager.cancel_job_by_id_async(job_id, delete_job=True, connection=conn)
