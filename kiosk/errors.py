"""Domain errors that carry their HTTP status, so domain code raises without importing FastAPI.

`kiosk.app` turns any `DomainError` into `{"detail": ...}` with `status`: routers do not translate
them. Outside the hierarchy on purpose, because no HTTP answer ever carries them: the worker-only
control flow (`schedules.executor.RetryLater`/`RunFailed`, `deliveries.DeliveryRetry`/
`DeliveryFailed`, `jobs.timeouts.JobTimeout`), the Mercado Pago client's `MPError` family (the
domain maps each to what it means: retry, Conflict, ProviderFailed) and programming errors such as
`queue.UnknownTask`.
"""

from __future__ import annotations


class DomainError(Exception):
    status = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the answer (none by default)."""
        return {}


class Unauthorized(DomainError):
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(DomainError):
    status = 403


class TooManyRequests(DomainError):
    """A limit was reached; trying again after `retry_after` seconds can succeed."""

    status = 429

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(DomainError):
    status = 404


class Invalid(DomainError):
    status = 422


class Conflict(DomainError):
    status = 409


class Unavailable(DomainError):
    """The kiosk cannot answer now (a search stopped at its time limit); trying later can work."""

    status = 503


class ProviderFailed(DomainError):
    """The payment provider answered with an error or could not be reached."""

    status = 502
