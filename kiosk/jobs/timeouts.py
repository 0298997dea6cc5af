"""Per-task time limits for async tasks.

An async task that awaits a hung HTTP call would hold its worker slot forever. Each async task runs
under `asyncio.timeout`: its own `timeout=` (`@app.task(..., timeout=30)`), else KIOSK_JOB_TIMEOUT.
Expiry raises `JobTimeout`, an ordinary failure: the outcome says `timed_out` and the task's retry
policy decides. Sync tasks run in a thread that cannot be interrupted, so they get no limit.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kiosk.settings import get_settings

R = TypeVar("R")


class JobTimeout(Exception):
    """The task ran longer than its time limit; the attempt fails."""


def limit(func: Callable[..., Awaitable[R]], seconds: float | None) -> Callable[..., Awaitable[R]]:
    """Wrap an async task function so that it fails with JobTimeout after `seconds`.

    None means KIOSK_JOB_TIMEOUT, read when the job runs (tasks.app imports without settings);
    0 means no limit.
    """
    if seconds is not None and seconds < 0:
        raise ValueError("timeout must be >= 0 seconds (0 = no limit)")

    @functools.wraps(func)
    async def limited(*args: Any, **kwargs: Any) -> R:
        budget = get_settings().job_timeout if seconds is None else seconds
        if not budget:
            return await func(*args, **kwargs)
        try:
            async with asyncio.timeout(budget) as deadline:
                return await func(*args, **kwargs)
        except TimeoutError:
            # Only our deadline is a JobTimeout; a TimeoutError the task raised itself stays one.
            if deadline.expired():
                raise JobTimeout(f"{func.__name__} exceeded its {budget:g}s time limit") from None
            raise

    return limited
