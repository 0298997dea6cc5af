"""The one table from exception to HTTP answer (kiosk/http_errors.py), which the JSON API, the
webhook fast path and the dashboard's error page share."""

from __future__ import annotations

import psycopg
import psycopg_pool
import pytest

from kiosk import errors, http_errors
from kiosk.admin.jobs import JobNotFound
from kiosk.schedules.service import ScheduleConflict, ScheduleNotFound
from kiosk.schedules.spec import InvalidSchedule


@pytest.mark.parametrize(
    ("exc", "status", "detail"),
    [
        (ScheduleNotFound(7), 404, "schedule 7 not found"),
        (ScheduleConflict("a schedule named 'x' already exists"), 409, None),
        (InvalidSchedule("may not be null: cron"), 422, None),
        (JobNotFound(3), 404, "job 3 not found"),
        (errors.Unavailable("stopped"), 503, None),
        (psycopg_pool.PoolTimeout("pool"), 503, "database unavailable"),
        (psycopg.OperationalError("down"), 503, "database unavailable"),
    ],
)
def test_each_known_exception_has_one_answer(exc: Exception, status: int, detail: str | None):
    assert isinstance(exc, http_errors.KNOWN)
    answer = http_errors.answer_for(exc)
    assert answer.status == status
    assert answer.detail == (detail if detail is not None else str(exc))


def test_headers_travel_with_the_answer() -> None:
    assert http_errors.answer_for(errors.TooManyRequests("later", 7)).headers == {
        "Retry-After": "7"
    }
    assert http_errors.answer_for(errors.Unauthorized("token")).headers == {
        "WWW-Authenticate": "Bearer"
    }
    assert http_errors.answer_for(errors.NotFound("no")).headers == {}


def test_a_value_postgresql_refuses_is_bad_input_without_its_detail_lines() -> None:
    answer = http_errors.answer_for(
        psycopg.errors.NumericValueOutOfRange("value out of range\nDETAIL: 99999999999")
    )
    assert (answer.status, answer.detail) == (422, "invalid value: value out of range")


def test_schedule_errors_are_domain_errors_not_value_errors() -> None:
    # The schedules router translates nothing: the app's table answers them.
    assert issubclass(InvalidSchedule, errors.Invalid) and not issubclass(
        InvalidSchedule, ValueError
    )
    assert issubclass(ScheduleNotFound, errors.NotFound)
    assert issubclass(ScheduleConflict, errors.Conflict)
