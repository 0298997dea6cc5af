"""Reading the dashboard's query strings and form bodies into domain values, and back.

Bad input becomes a message shown on the page and the field is ignored: a typo in a filter should
not cost the operator the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from urllib.parse import parse_qsl

from kiosk.admin.jobs import STATUSES, JobFilter

MAX_BODY = 64 * 1024
FILTER_FIELDS = (
    "status",
    "queue",
    "task",
    "q",
    "deferred_after",
    "deferred_before",
    "min_attempts",
)


def parse_body(body: bytes) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (every dashboard form), first value per name."""
    if len(body) > MAX_BODY:
        raise ValueError("form too large")
    form: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        form.setdefault(key, value)
    return form


def parse_time(text: str) -> dt.datetime:
    """`datetime-local` input (`2026-11-25T15:09`) or ISO 8601; naive times are UTC."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_int(text: str | None, *, minimum: int = 0) -> int | None:
    if text is None or not text.strip():
        return None
    value = int(text)
    if value < minimum:
        raise ValueError(f"must be at least {minimum}")
    return value


def parse_filter(values: Mapping[str, str]) -> tuple[JobFilter, list[str]]:
    errors: list[str] = []

    def text(name: str, limit: int) -> str | None:
        value = (values.get(name) or "").strip()
        if len(value) > limit:
            errors.append(f"{name}: at most {limit} characters")
            return None
        return value or None

    status = text("status", 32)
    if status is not None and status not in STATUSES:
        errors.append(f"status: one of {', '.join(STATUSES)}")
        status = None
    times: dict[str, dt.datetime | None] = {}
    for name in ("deferred_after", "deferred_before"):
        raw = text(name, 64)
        try:
            times[name] = parse_time(raw) if raw else None
        except ValueError:
            errors.append(f"{name}: not a date and time")
            times[name] = None
    try:
        min_attempts = parse_int(values.get("min_attempts"))
    except ValueError:
        errors.append("min_attempts: a whole number, 0 or more")
        min_attempts = None
    flt = JobFilter(
        status=status,
        queue=text("queue", 128),
        task=text("task", 128),
        text=text("q", 200),
        deferred_after=times["deferred_after"],
        deferred_before=times["deferred_before"],
        min_attempts=min_attempts,
    )
    return flt, [f"{error} (ignored)" for error in errors]


def filter_params(flt: JobFilter) -> dict[str, str]:
    """The filter as query parameters / hidden form fields (the inverse of parse_filter)."""

    def fmt(value: dt.datetime | None) -> str | None:
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") if value else None

    params = {
        "status": flt.status,
        "queue": flt.queue,
        "task": flt.task,
        "q": flt.text,
        "deferred_after": fmt(flt.deferred_after),
        "deferred_before": fmt(flt.deferred_before),
        "min_attempts": None if flt.min_attempts is None else str(flt.min_attempts),
    }
    return {k: v for k, v in params.items() if v is not None}


def parse_limits(values: Mapping[str, str]) -> tuple[float | None, int | None]:
    """The limits form of a queue card: empty = no limit; ValueError says which field is wrong
    (the range is the service's to check)."""
    rate_text = (values.get("max_per_second") or "").strip()
    running_text = (values.get("max_running") or "").strip()
    try:
        rate = float(rate_text) if rate_text else None
    except ValueError:
        raise ValueError("max starts per second: a number, or empty for no limit") from None
    try:
        running = int(running_text) if running_text else None
    except ValueError:
        raise ValueError("max running: a whole number, or empty for no limit") from None
    return rate, running
