"""Domain errors that carry their HTTP status, so domain code raises without importing FastAPI.

`kiosk.app` turns any `DomainError` into `{"detail": ...}` with `status`.
"""

from __future__ import annotations


class DomainError(Exception):
    status = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status = 404


class Invalid(DomainError):
    status = 422


class Conflict(DomainError):
    status = 409


class ProviderFailed(DomainError):
    """The payment provider answered with an error or could not be reached."""

    status = 502
