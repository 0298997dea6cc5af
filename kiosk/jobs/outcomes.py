"""Job outcomes: how every attempt of every job ended, in `job_outcomes`.

procrastinate keeps a job's status and events but no result, error or duration. `record_outcome`
is a worker middleware (wired app-wide in kiosk/queue.py, so it wraps sync and async tasks alike)
that builds one row per attempt: job id, attempt, worker, task, queue, start, end, duration,
status, the JSON-safe return value and, for a failure, the error type, message and traceback, all
truncated. It writes nothing itself: it hands the row to the worker's job manager
(kiosk/jobs/finisher.py), which commits it in the same transaction as the job's finish or retry,
so a finished job always has its row and a row always belongs to a recorded finish.

Statuses: `succeeded`, `failed`, `timed_out` (JobTimeout), `aborted` (an operator asked),
`interrupted` (cancelled by a worker shutdown, retried), and `worker_lost` (written by the stalled
job sweep for an attempt whose worker died).
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback as tb
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from procrastinate import exceptions, job_context

from kiosk import db
from kiosk.jobs.finisher import GroupCommitManager
from kiosk.jobs.ids import job_id
from kiosk.jobs.timeouts import JobTimeout
from kiosk.sql import load_queries

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
    """procrastinate worker middleware: run the job, then hand its outcome row to the finisher."""
    started_at = time.time()
    clock = time.perf_counter()
    try:
        result = await call_next()
    except asyncio.CancelledError as exc:
        if context.abort_reason() == job_context.AbortReason.USER_REQUEST:
            # An operator's abort is final: procrastinate must not hand it to the retry
            # strategy (ShutdownRetry would retry a bare CancelledError).
            _hand(context, worker, "aborted", started_at, clock, None, exc)
            raise exceptions.JobAborted("aborted on request") from None
        _hand(context, worker, "interrupted", started_at, clock, None, exc)
        raise
    except exceptions.JobAborted as exc:
        shutdown = context.abort_reason() == job_context.AbortReason.SHUTDOWN
        _hand(
            context, worker, "interrupted" if shutdown else "aborted", started_at, clock, None, exc
        )
        raise
    except JobTimeout as exc:
        _hand(context, worker, "timed_out", started_at, clock, None, exc)
        raise
    except BaseException as exc:
        _hand(context, worker, "failed", started_at, clock, None, exc)
        raise
    _hand(context, worker, "succeeded", started_at, clock, result, None)
    return result


def _hand(
    context: job_context.JobContext,
    worker: Any,
    status: str,
    started_at: float,
    clock: float,
    result: Any,
    error: BaseException | None,
) -> None:
    """Give the attempt's row to the job manager, which writes it with the job's finish."""
    manager = context.app.job_manager
    if not isinstance(manager, GroupCommitManager):
        raise TypeError(
            "record_outcome needs kiosk's job manager (KioskApp): outcome rows are written "
            "with the job's finish"
        )
    job = context.job
    id_ = job_id(job)
    error_type = error_message = traceback = None
    if error is not None:
        error_type = _clean(type(error).__qualname__, 200)
        error_message = _clean(str(error), MESSAGE_LIMIT)
        if status in ("failed", "timed_out"):
            traceback = _clean("".join(tb.format_exception(error)), TRACEBACK_LIMIT, tail=True)
    # In the order of finisher.OUTCOME_FIELDS: a JSON array per row is cheaper than an object.
    row = (
        id_,
        job.attempts + 1,
        job.task_name,
        job.queue,
        getattr(worker, "worker_id", None),
        context.worker_name,
        status,
        started_at,
        time.perf_counter() - clock,
        None if result is None else json_text(result),
        error_type,
        error_message,
        traceback,
    )
    manager.hand_outcome(id_, row)


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
