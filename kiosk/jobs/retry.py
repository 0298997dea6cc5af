"""Shutdown-safe retries.

When a worker stops (SIGTERM) it waits `--shutdown-graceful-timeout` seconds for running jobs, then
cancels the async ones. procrastinate hands that cancellation to the task's retry strategy, and a
task without one ends `aborted` for good: verified with real workers, a cancelled job of a
`retry=False` task is never run again. Every kiosk task therefore gets `ShutdownRetry` around its
own policy: an attempt cut short by a shutdown goes straight back to `todo`, whatever the policy;
every other failure is the policy's call, as before.
"""

from __future__ import annotations

import asyncio

from procrastinate import BaseRetryStrategy, RetryDecision, exceptions
from procrastinate.jobs import Job


class ShutdownRetry(BaseRetryStrategy):
    def __init__(self, policy: BaseRetryStrategy | None):
        self.policy = policy

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        # A CancelledError or JobAborted only reaches a retry strategy when the worker is shutting
        # down: kiosk's outcome middleware turns an operator's abort into a final JobAborted.
        if isinstance(exception, (asyncio.CancelledError, exceptions.JobAborted)):
            return RetryDecision(retry_in={"seconds": 0})
        if self.policy is None:
            return None
        retry = self.policy.get_retry_exception(exception=exception, job=job)
        return retry.retry_decision if retry else None

    def __repr__(self) -> str:
        return f"ShutdownRetry({self.policy!r})"
