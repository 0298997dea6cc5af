"""The procrastinate app and the one way application code defers a job.

Rule for the whole code base: domain code defers jobs **by task name**, on the connection of the
transaction that makes the change (`defer(conn, "payments.process_notification", ...)`). Job code
in `tasks/` imports the domain, never the other way round, so there is no import circle. The app
is re-exported as `tasks.app` for `procrastinate --app=tasks.app worker`.
"""

from __future__ import annotations

import datetime
import functools
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector, exceptions

from kiosk import db

# The pool is created when the app opens (worker) or handed over by the API, never at import:
# `tasks.app` stays importable without a database. Its connections are named `kiosk-worker:...`
# (kiosk worker-health finds a host's workers by that name).
app = App(
    connector=PsycopgConnector(pool_factory=functools.partial(db.create_pool, role="worker")),
    import_paths=["tasks", "periodic"],
    # NOTIFY wakes workers for jobs due now; a job due later (schedule_at, retry backoff) is found
    # by polling, so this bounds how late it starts (procrastinate's default is 5 s).
    worker_defaults={"fetch_job_polling_interval": 1.0},
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
        cursor = await conn.execute(_HOLD_WAITING, {"queueing_lock": queueing_lock})
        if await cursor.fetchone():
            return None
    return None


# The job waiting with a queueing lock, locked until the caller's transaction ends.
_HOLD_WAITING = """
    SELECT id FROM procrastinate_jobs
    WHERE queueing_lock = %(queueing_lock)s AND status = 'todo'
    FOR KEY SHARE
"""
# A clash, then no waiting job (it started), then a clash again...: give up after this many.
_CLASHES = 5


async def cancel(conn: psycopg.AsyncConnection, job_id: int) -> bool:
    """Delete a job that has not started yet, in the caller's transaction.

    False when the job is already running, finished or gone; a running job is left to finish.
    """
    return await app.job_manager.cancel_job_by_id_async(job_id, delete_job=True, connection=conn)
