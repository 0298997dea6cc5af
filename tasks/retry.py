"""Exponential backoff for jobs that call another service, bounded by KIOSK_PAYMENT_MAX_ATTEMPTS.

A procrastinate retry strategy that reads the limit when a job fails (not at import, so
`tasks.app` stays importable without configuration). Only the given exception types are
retried, and a lost database (it restarted, a failover, the pool found no connection): the job
changed nothing it did not commit, so running it again is safe. Anything else fails the job at once.
"""

from __future__ import annotations

import psycopg
from procrastinate import BaseRetryStrategy, RetryDecision, exceptions
from procrastinate.jobs import Job

from kiosk.settings import get_settings

BASE_SECONDS = 2  # waits 2, 4, 8, 16 ... seconds


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (procrastinate wraps its own)."""
    if isinstance(exc, exceptions.ConnectorException):
        exc = exc.__cause__ or exc
    # psycopg_pool.PoolTimeout is an OperationalError too.
    return isinstance(exc, psycopg.OperationalError)


class Backoff(BaseRetryStrategy):
    def __init__(self, *retry_on: type[BaseException], base: int = BASE_SECONDS):
        self.retry_on = retry_on
        self.base = base

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if not (isinstance(exception, self.retry_on) or database_unavailable(exception)):
            return None
        # job.attempts counts the runs before this one.
        if job.attempts + 1 >= get_settings().payment_max_attempts:
            return None
        return RetryDecision(retry_in={"seconds": self.base ** (job.attempts + 1)})
