"""Job code of schedules: one run of a scheduled HTTP request (kiosk/schedules/executor.py)."""

from __future__ import annotations

from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job

from kiosk.queue import app
from kiosk.schedules import dispatcher, executor


class RunRetry(BaseRetryStrategy):
    """Retry only when the executor asks (RetryLater): it knows the schedule's max attempts."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        when = executor.retry_at(exception)
        return RetryDecision(retry_at=when) if when else None


@app.task(name=dispatcher.EXECUTE_TASK, retry=RunRetry())
async def execute_run(run_id: int) -> None:
    await executor.execute(run_id)
