"""Exponential backoff for jobs that call another service, bounded by KIOSK_PAYMENT_MAX_ATTEMPTS;
and `LedgerBackoff` for jobs whose own ledger decides when to try again and when to stop.

A procrastinate retry strategy that reads the limit when a job fails (not at import, so
`tasks.app` stays importable without configuration). Only the given exception types are
retried, and a lost database (it restarted, a failover, the pool found no connection): the job
changed nothing it did not commit, so running it again is safe. Anything else fails the job at once.
"""

from __future__ import annotations

import math

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


class LedgerBackoff(BaseRetryStrategy):
    """Retries decided by the job's own ledger (the delivery ledger, kiosk/notifications).

    An exception of `retry_on` that carries `retry_in` (seconds) was recorded there with its next
    due time and its limits (KIOSK_DELIVERY_MAX_AGE_SECONDS / _MAX_ATTEMPTS) already checked: the
    job runs again then, however many runs it took so far. Anything else (a lost database, an
    exception without `retry_in`) falls back to `Backoff`; a job that still fails is picked up by
    the ledger's own sweep later.
    """

    def __init__(self, *retry_on: type[BaseException], base: int = BASE_SECONDS):
        self.retry_on = retry_on
        self.fallback = Backoff(*retry_on, base=base)

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        retry_in = getattr(exception, "retry_in", None)
        if isinstance(exception, self.retry_on) and retry_in is not None:
            return RetryDecision(retry_in={"seconds": max(0, math.ceil(retry_in))})
        return self.fallback.get_retry_decision(exception=exception, job=job)
