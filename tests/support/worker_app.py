"""Test-only tasks on the real `tasks.app`, for real worker processes.

Run with `procrastinate --app=tests.support.worker_app.app worker`: the workers load kiosk's app
(outcome middleware, timeouts, shutdown retries, periodic tasks) plus these tasks, which never ship.
Side effects go to tables made by `tests/support/jobs.py`.
"""

from __future__ import annotations

import asyncio
import os
import time

import psycopg
from procrastinate import JobContext, exceptions

from kiosk import db
from tasks import app
from tests.support import probe_tasks  # noqa: F401  (the probe tasks: these workers know them too)

__all__ = ["app"]


async def _mark(table: str, key: str, attempt: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            f"INSERT INTO {table} (key, attempt, pid) VALUES (%s, %s, %s)",  # table: constant
            (key, attempt, os.getpid()),
        )


@app.task(name="tests.effect", pass_context=True, timeout=0)
async def effect(context: JobContext, key: str, first_sleep: float = 0, sleep: float = 0) -> dict:
    """Mark the start, sleep (longer on the first attempt), then do the side effect once."""
    attempt = context.job.attempts + 1
    await _mark("test_job_starts", key, attempt)
    await asyncio.sleep(first_sleep if attempt == 1 else sleep)
    await _mark("test_job_effects", key, attempt)
    return {"key": key, "attempt": attempt, "pid": os.getpid()}


@app.task(name="tests.flaky", pass_context=True, retry=1)
async def flaky(context: JobContext, key: str) -> dict:
    if context.job.attempts == 0:
        raise ValueError(f"first attempt of {key} fails")
    return {"key": key, "ok": True}


@app.task(name="tests.sync_fail")
def sync_fail(key: str) -> None:
    raise RuntimeError(f"sync task {key} failed")


@app.task(name="tests.sync_ok")
def sync_ok(key: str) -> str:
    return f"sync {key}"


@app.task(name="tests.big_result")
async def big_result(size: int) -> str:
    return "x" * size


@app.task(name="tests.slow", pass_context=True, retry=1, timeout=0.5)
async def slow(context: JobContext, seconds: float) -> str:
    """Its own 0.5 s limit: the first attempt sleeps too long and times out, the retry is quick."""
    await asyncio.sleep(seconds if context.job.attempts == 0 else 0)
    return "in time"


@app.task(name="tests.default_limit")
async def default_limit(seconds: float) -> str:
    """No timeout= of its own: KIOSK_JOB_TIMEOUT applies."""
    await asyncio.sleep(seconds)
    return "in time"


@app.task(name="tests.own_timeout_error")
async def own_timeout_error() -> None:
    """A TimeoutError the task raises itself is an ordinary failure, not a time limit."""
    raise TimeoutError("upstream said 504")


@app.task(name="tests.sync_effect", pass_context=True)
def sync_effect(context: JobContext, key: str, first_sleep: float = 0) -> str:
    """A sync task cannot be cancelled: it polls should_abort() and raises JobAborted."""
    attempt = context.job.attempts + 1
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO test_job_starts (key, attempt, pid) VALUES (%s, %s, %s)",
            (key, attempt, os.getpid()),
        )
        deadline = time.monotonic() + (first_sleep if attempt == 1 else 0)
        while time.monotonic() < deadline:
            if context.should_abort():
                raise exceptions.JobAborted("stopping with the worker")
            time.sleep(0.05)
        conn.execute(
            "INSERT INTO test_job_effects (key, attempt, pid) VALUES (%s, %s, %s)",
            (key, attempt, os.getpid()),
        )
    return key
