"""Test tasks for the batched fetch and the queue controls, on the real `tasks.app`.

Workers run `procrastinate --app=tests.support.fetch_app.app worker`: kiosk's app (KioskJobManager,
KioskWorker, outcome middleware), the tasks of tests/support/worker_app.py and these. Each run
records, in `test_fetch_runs` (made by `FETCH_TABLES`), when it started and ended, read in the
task, so the tests measure starts and overlaps where the job runs.
"""

from __future__ import annotations

import asyncio
import os
import time

from procrastinate import JobContext

from kiosk import db
from tests.support.worker_app import app

__all__ = ["FETCH_TABLES", "app"]

FETCH_TABLES = """
CREATE TABLE IF NOT EXISTS test_fetch_runs (
    job_id bigint, key text, queue text, pid int,
    started_at timestamptz, ended_at timestamptz
);
CREATE TABLE IF NOT EXISTS test_fetch_release (key text);
"""


@app.task(name="tests.fetch.run", pass_context=True, timeout=0)
async def run(context: JobContext, key: str = "", sleep: float = 0) -> None:
    """Record the start and the end: the machine's clock (the database's too), read in the task."""
    started = time.time()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO test_fetch_runs (job_id, key, queue, pid, started_at) "
            "VALUES (%s, %s, %s, %s, to_timestamp(%s))",
            (context.job.id, key, context.job.queue, os.getpid(), started),
        )
    await asyncio.sleep(sleep)
    ended = time.time()
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE test_fetch_runs SET ended_at = to_timestamp(%s) WHERE job_id = %s",
            (ended, context.job.id),
        )


@app.task(name="tests.fetch.hold", pass_context=True, timeout=0)
async def hold(context: JobContext, key: str, seconds: float) -> None:
    """Like `run`, but running until the test inserts `key` into `test_fetch_release` (or for
    `seconds` at most): a job that keeps its worker busy exactly as long as a test needs."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO test_fetch_runs (job_id, key, queue, pid, started_at) "
            "VALUES (%s, %s, %s, %s, clock_timestamp())",
            (context.job.id, key, context.job.queue, os.getpid()),
        )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with db.transaction() as conn:
            cursor = await conn.execute("SELECT 1 FROM test_fetch_release WHERE key = %s", (key,))
            if await cursor.fetchone():
                break
        await asyncio.sleep(0.05)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE test_fetch_runs SET ended_at = clock_timestamp() WHERE job_id = %s",
            (context.job.id,),
        )


@app.task(name="tests.fetch.hog", pass_context=True, timeout=0)
async def hog(context: JobContext, seconds: float, key: str = "") -> None:
    """Hold the worker's event loop (a CPU-bound task written as async), then record the run.

    While it holds the loop, the worker hands out nothing: the jobs of its last round trip stay
    in its buffer, which is what the SIGTERM test needs.
    """
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop on purpose
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO test_fetch_runs (job_id, key, queue, pid, started_at, ended_at) "
            "VALUES (%s, 'hog', %s, %s, clock_timestamp(), clock_timestamp())",
            (context.job.id, context.job.queue, os.getpid()),
        )
