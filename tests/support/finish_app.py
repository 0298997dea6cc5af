"""Test-only app for the group-commit tests: the test tasks plus a job manager that tells.

`procrastinate --app=tests.support.finish_app.app worker` with FINISH_LOG=<file>: after each
finish or retry call *returns* the worker appends `done <job id>` to the file, and `failed <job
id>` when it raised; an append reaches the kernel at once, so a `kill -9` right after loses no line.
The tests compare these lines with what the database committed.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

from procrastinate import BaseRetryStrategy, RetryDecision, jobs

from kiosk.jobs.manager import KioskJobManager
from tests.support.worker_app import app

__all__ = ["app"]

_log: int | None = None


def _note(line: str) -> None:
    global _log
    if _log is None:
        _log = os.open(os.environ["FINISH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_log, f"{line}\n".encode())


class TellingJobManager(KioskJobManager):
    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        try:
            await super().finish_job(job, status, delete_job)
        except BaseException:
            _note(f"failed {job.id}")
            raise
        _note(f"done {job.id}")

    async def retry_job(self, job: jobs.Job, *args: Any, **kwargs: Any) -> None:
        try:
            await super().retry_job(job, *args, **kwargs)
        except BaseException:
            _note(f"failed {job.id}")
            raise
        _note(f"done {job.id}")


app.job_manager = TellingJobManager(app.connector)


@app.task(name="tests.noop")
async def noop(n: int = 0) -> int:
    return n


# Jobs of one group wait for each other and then all return in the same turn of the event loop,
# so their finishes are submitted together: one batch.
_groups: dict[str, tuple[asyncio.Event, list[int]]] = {}


async def _gather(group: str, size: int) -> None:
    event, arrived = _groups.setdefault(group, (asyncio.Event(), []))
    arrived.append(1)
    if len(arrived) >= size:
        event.set()
    await asyncio.wait_for(event.wait(), 60)


@app.task(name="tests.gathered")
async def gathered(group: str, size: int) -> str:
    await _gather(group, size)
    return group


@app.task(name="tests.poisoned")
async def poisoned(group: str, size: int) -> str:
    """Its outcome row is refused by a trigger the test installs: its whole batch fails."""
    await _gather(group, size)
    return group


class MoveOnRetry(BaseRetryStrategy):
    """Retry once, an hour later, with another priority, queue and lock."""

    def get_retry_decision(
        self, *, exception: BaseException, job: jobs.Job
    ) -> RetryDecision | None:
        if job.attempts:
            return None
        return RetryDecision(
            retry_at=datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC),
            priority=7,
            queue="finish-retried",
            lock=f"finish-lock-{job.id}",
        )


@app.task(name="tests.retry_moves", retry=MoveOnRetry(), timeout=0)
async def retry_moves(group: str, size: int) -> None:
    await _gather(group, size)
    raise ValueError(f"fails in {group}")
