"""Queues by concern: every kiosk task on its queue, and KIOSK_QUEUE_LIMITS parsed and checked
(the controls themselves: tests/integration/test_queue_controls.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kiosk import queue
from kiosk.queues import names
from kiosk.validators import parse_queue_limits

# Which queue each task of tasks/ and periodic.py runs on (docs/workers.md, "Queues").
EXPECTED = {
    "payments.process_notification": names.PAYMENTS,
    "payments.resolve_intent": names.PAYMENTS,
    "payments.refund_intent": names.PAYMENTS,
    "payments.check_stale_intent": names.PAYMENTS,
    "payments.cleanup_payment_intents": names.PAYMENTS,
    "orders.send_receipt": names.NOTIFICATIONS,
    "orders.notify_paid": names.NOTIFICATIONS,
    "schedules.dispatch": names.SCHEDULES,
    "schedules.execute_run": names.SCHEDULES,
    "jobs.retry_stalled_jobs": names.MAINTENANCE,
    "jobs.prune_jobs": names.MAINTENANCE,
    "retention.prune_tables": names.MAINTENANCE,
    "orders.expire_orders": names.MAINTENANCE,
    "orders.expire": names.MAINTENANCE,
    "orders.resume_deliveries": names.MAINTENANCE,
    "exports.orders_csv": names.EXPORTS,
}


def kiosk_tasks() -> dict[str, str]:
    queue.app.perform_import_paths()
    return {
        name: task.queue
        for name, task in queue.app.tasks.items()
        if task.func.__module__.partition(".")[0] in ("tasks", "periodic")
    }


def test_every_kiosk_task_is_on_the_queue_of_its_concern() -> None:
    tasks = kiosk_tasks()
    assert set(tasks) == set(EXPECTED), "a task was added or renamed: give it its queue here"
    assert tasks == EXPECTED
    # None is left on procrastinate's default queue, and every queue is a known one.
    assert set(tasks.values()) == set(names.KIOSK_QUEUES)


def test_a_defer_by_name_lands_on_the_tasks_queue() -> None:
    """kiosk.queue.defer and defer_many build their jobs through configure_task: the task's queue
    unless a caller names another (no kiosk caller does, but the admin's periodic run-now)."""
    for name, expected in EXPECTED.items():
        job = queue.app.configure_task(name).make_new_job()
        assert job.queue == expected, name


def test_queue_limits_format() -> None:
    assert parse_queue_limits("") == {}
    assert parse_queue_limits(
        " payments : max_per_second=20 , max_running=5 ;exports:max_running=1;"
    ) == {
        "payments": (20.0, 5),
        "exports": (None, 1),
    }
    assert parse_queue_limits("a.b-c_d:max_per_second=0.5") == {"a.b-c_d": (0.5, None)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("payments", "is not `queue:max_per_second=N,max_running=N`"),
        ("payments:", "is not `queue:"),
        ("bad queue:max_running=1", "is not a queue name"),
        ("p:max_running=0", "max_running must be between 1 and 10000"),
        ("p:max_running=10001", "max_running must be between 1 and 10000"),
        ("p:max_running=1.5", "max_running must be a whole number"),
        ("p:max_per_second=0", "max_per_second must be above 0"),
        ("p:max_per_second=nan", "max_per_second must be above 0"),
        ("p:max_per_second=inf", "max_per_second must be above 0"),
        ("p:max_per_second=fast", "max_per_second must be a number"),
        ("p:concurrency=2", "is not max_per_second=N or max_running=N"),
        ("p:max_running", "is not max_per_second=N or max_running=N"),
        ("p:max_running=1;p:max_running=2", "listed twice"),
        ("p:max_running=1,max_running=2", "given twice"),
    ],
)
def test_queue_limits_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("`", ".")):
        parse_queue_limits(text)


BASE = {
    "DATABASE_URL": "postgresql://h/d",
    "admin_token": "a" * 20,
    "MP_ACCESS_TOKEN": "t",
    "MP_WEBHOOK_SECRET": "s",
}


def test_queue_limits_setting() -> None:
    from kiosk.settings import Settings, SettingsError, _describe

    assert Settings(**BASE).queue_limit_map == {}  # type: ignore[arg-type]
    settings = Settings(**BASE, queue_limits="payments:max_per_second=20,max_running=5")  # type: ignore[arg-type]
    assert settings.queue_limit_map == {"payments": (20.0, 5)}
    with pytest.raises(ValidationError) as refused:
        Settings(**BASE, queue_limits="payments:max_running=0")  # type: ignore[arg-type]
    assert _describe(refused.value) == (
        "KIOSK_QUEUE_LIMITS payments: max_running must be between 1 and 10000, got 0"
    )
    assert (
        SettingsError
    )  # the one-line error of a process start (tests/integration/test_settings.py)


def test_the_dashboard_limits_form() -> None:
    from kiosk.dashboard.forms import parse_limits

    assert parse_limits({"max_per_second": " 2.5 ", "max_running": "3"}) == (2.5, 3)
    assert parse_limits({"max_per_second": "", "max_running": ""}) == (None, None)
    assert parse_limits({}) == (None, None)
    with pytest.raises(ValueError, match="max running: a whole number"):
        parse_limits({"max_running": "1.5"})
    with pytest.raises(ValueError, match="max starts per second: a number"):
        parse_limits({"max_per_second": "fast"})


def test_reasons_and_limits_checked_by_the_service() -> None:
    from kiosk.queues import service

    assert service.clean_reason("  ") is None and service.clean_reason(None) is None
    assert service.clean_reason(" SMTP down ") == "SMTP down"
    assert service.clean_reason("é" * 200) == "é" * 200
    for bad in ("x" * 201, "two\nlines", "nul\x00"):
        with pytest.raises(service.InvalidQueue):
            service.clean_reason(bad)
    assert service.check_limits(20, 5) == (20.0, 5)
    assert service.check_limits(None, None) == (None, None)
    for rate, running in ((0, None), (None, 0), (True, None), (None, 2.0), ("1", None)):
        with pytest.raises(service.InvalidQueue) as refused:
            service.check_limits(rate, running)
        assert refused.value.status == 422
    for name in ("", "a b", "x" * 65, "café", "a/b"):
        with pytest.raises(service.InvalidQueue, match="is not a queue name"):
            service.check_name(name)
