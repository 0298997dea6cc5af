"""Job outcomes: how every attempt of every job ended, in `job_outcomes`.

procrastinate keeps a job's status and events but no result, error or duration. `record_outcome`
is a worker middleware (wired app-wide in kiosk/queue.py, so it wraps sync and async tasks alike)
that writes one row per attempt: job id, attempt, worker, task, queue, start, end, duration,
status, the JSON-safe return value and, for a failure, the error type, message and traceback, all
truncated. It costs one INSERT per attempt, its own transaction, after the task's own transaction
is over and before procrastinate marks the job finished (so a finished job always has its row);
a failure to write is logged and never fails the job.

Statuses: `succeeded`, `failed`, `timed_out` (JobTimeout), `aborted` (an operator asked),
`interrupted` (cancelled by a worker shutdown, retried), and `worker_lost` (written by the stalled
job sweep for an attempt whose worker died).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback as tb
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from procrastinate import exceptions, job_context

from kiosk import db
from kiosk.jobs.timeouts import JobTimeout
from kiosk.sql import load_queries

logger = logging.getLogger("kiosk.jobs")
QUERIES = load_queries("kiosk.jobs")

RESULT_LIMIT = 4_000  # characters of JSON kept from a return value
MESSAGE_LIMIT = 2_000
TRACEBACK_LIMIT = 16_000  # the end of the traceback is kept: that is where the error is
STATUSES = ("succeeded", "failed", "timed_out", "aborted", "interrupted", "worker_lost")


@dataclass(frozen=True)
class JobOutcome:
    id: int
    job_id: int
    attempt: int
    task_name: str
    queue_name: str
    worker_id: int | None
    worker_name: str | None
    status: str
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    result: Any
    error_type: str | None
    error_message: str | None
    traceback: str | None


async def for_job(conn: psycopg.AsyncConnection, job_id: int) -> list[JobOutcome]:
    """Every recorded attempt of one job, first attempt first."""
    return await db.fetch_all_as(conn, JobOutcome, QUERIES["outcomes_for_job"], {"job_id": job_id})


@dataclass(frozen=True)
class LastError:
    """How the latest attempt of a job that did not succeed ended: what a list of failures shows."""

    job_id: int
    attempt: int
    status: str
    ended_at: datetime
    error_type: str | None
    error_message: str | None


async def last_errors(conn: psycopg.AsyncConnection, job_ids: list[int]) -> dict[int, LastError]:
    """The last attempt that did not succeed of each given job, in one query (by job id)."""
    if not job_ids:
        return {}
    errors = await db.fetch_all_as(
        conn, LastError, QUERIES["last_errors"], {"job_ids": list(job_ids)}
    )
    return {error.job_id: error for error in errors}


async def record_outcome(call_next: Any, context: job_context.JobContext, worker: Any) -> Any:
    """procrastinate worker middleware: run the job, then write its outcome row."""
    started_at = time.time()
    clock = time.perf_counter()
    result: Any = None
    error: BaseException | None = None
    status = "succeeded"
    try:
        result = await call_next()
        return result
    except asyncio.CancelledError as exc:
        error = exc
        if context.abort_reason() == job_context.AbortReason.USER_REQUEST:
            # An operator's abort is final: procrastinate must not hand it to the retry
            # strategy (ShutdownRetry would retry a bare CancelledError).
            status = "aborted"
            raise exceptions.JobAborted("aborted on request") from None
        status = "interrupted"
        raise
    except exceptions.JobAborted as exc:
        error = exc
        shutdown = context.abort_reason() == job_context.AbortReason.SHUTDOWN
        status = "interrupted" if shutdown else "aborted"
        raise
    except JobTimeout as exc:
        error, status = exc, "timed_out"
        raise
    except BaseException as exc:
        error, status = exc, "failed"
        raise
    finally:
        row = _row(context, worker, status, started_at, time.perf_counter() - clock, result, error)
        # Shielded: a second cancellation must not cut a statement off mid-flight.
        await asyncio.shield(writer.write(row))


def _row(
    context: job_context.JobContext,
    worker: Any,
    status: str,
    started_at: float,
    duration: float,
    result: Any,
    error: BaseException | None,
) -> dict[str, Any]:
    job = context.job
    row: dict[str, Any] = {
        "job_id": job.id,
        "attempt": job.attempts + 1,
        "task_name": job.task_name,
        "queue_name": job.queue,
        "worker_id": getattr(worker, "worker_id", None),
        "worker_name": context.worker_name,
        "status": status,
        "started_at": started_at,
        "ended_at": started_at + duration,
        "duration_seconds": duration,
        "result": None if error or result is None else json_text(result),
        "error_type": None,
        "error_message": None,
        "traceback": None,
    }
    if error is not None:
        row["error_type"] = _clean(type(error).__qualname__, 200)
        row["error_message"] = _clean(str(error), MESSAGE_LIMIT)
        if status in ("failed", "timed_out"):
            row["traceback"] = _clean(
                "".join(tb.format_exception(error)), TRACEBACK_LIMIT, tail=True
            )
    return row


class OutcomeWriter:
    """Writes outcome rows on one pool connection that a worker keeps while it runs.

    Each row is one INSERT in autocommit, its own transaction, in one round trip: no BEGIN/COMMIT
    and no pool checkout (with its liveness check) per job. `KioskApp.run_worker_async` gives the
    connection back when the worker stops. A broken connection is replaced once, then the row is
    dropped with a warning: bookkeeping never fails the job.
    """

    def __init__(self) -> None:
        self._conn: psycopg.AsyncConnection | None = None
        self._pool: Any = None
        self._lock: asyncio.Lock | None = None

    async def write(self, row: dict[str, Any]) -> None:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            for last_try in (False, True):
                try:
                    conn = await self._connection()
                    await conn.execute(QUERIES["insert_outcome"], row)
                    return
                except psycopg.OperationalError:
                    await self._drop()
                    if last_try:
                        logger.warning(
                            "could not record the outcome of job %s", row["job_id"], exc_info=True
                        )
                except Exception:  # noqa: BLE001 - e.g. the pool is closed or exhausted
                    logger.warning(
                        "could not record the outcome of job %s", row["job_id"], exc_info=True
                    )
                    return

    async def _connection(self) -> psycopg.AsyncConnection:
        pool = db.pool()
        if self._conn is not None and (self._pool is not pool or self._conn.closed):
            await self._drop()
        if self._conn is None:
            conn = await pool.getconn(timeout=5)
            await conn.set_autocommit(True)
            self._conn, self._pool = conn, pool
        return self._conn

    async def _drop(self) -> None:
        conn, pool, self._conn, self._pool = self._conn, self._pool, None, None
        if conn is None:
            return
        try:
            if not conn.closed:
                await conn.set_autocommit(False)
            await pool.putconn(conn)  # the pool replaces it if it is broken
        except Exception:  # noqa: BLE001 - the pool may be closing already
            logger.debug("outcome connection not returned", exc_info=True)

    async def release(self) -> None:
        """Give the connection back to the pool (the worker is stopping)."""
        if self._lock is None:
            return
        async with self._lock:
            await self._drop()


writer = OutcomeWriter()


def json_text(value: Any) -> str:
    """`value` as JSON that PostgreSQL accepts, at most about RESULT_LIMIT characters."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):
        text = json.dumps(repr(value), ensure_ascii=False)
    if "\\u0000" in text:  # jsonb refuses NUL characters
        text = json.dumps(repr(value).replace("\x00", "\ufffd"), ensure_ascii=False)
    if len(text) > RESULT_LIMIT:
        text = json.dumps({"truncated": True, "length": len(text), "preview": text[:RESULT_LIMIT]})
    return text


def _clean(text: str, limit: int, *, tail: bool = False) -> str:
    text = text.replace("\x00", "\ufffd")
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if tail else text[:limit] + "…"
