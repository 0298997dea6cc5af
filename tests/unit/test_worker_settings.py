"""Worker settings mapped onto procrastinate's options, time limits and shutdown retries, in-process
(the workers themselves: tests/integration/test_worker_settings.py).
"""

from __future__ import annotations

import asyncio

import pytest
from procrastinate import RetryStrategy, exceptions
from procrastinate.jobs import Job
from procrastinate.testing import InMemoryConnector

from kiosk.jobs.app import KioskApp, worker_options
from kiosk.jobs.retry import ShutdownRetry
from kiosk.settings import Settings
from tests.support.startup import VALID


def test_settings_map_onto_procrastinate_worker_options():
    settings = Settings(
        **VALID,
        admin_token="x" * 20,
        worker_concurrency=4,  # type: ignore[arg-type]
        worker_queues=" payments, mail ,",
        worker_shutdown_timeout=25,
    )
    assert worker_options(settings) == {
        "concurrency": 4,
        "queues": ["payments", "mail"],
        "shutdown_graceful_timeout": 25.0,
        "update_heartbeat_interval": 10.0,
        "stalled_worker_timeout": 30.0,
    }
    every = Settings(**VALID, admin_token="x" * 20)  # type: ignore[arg-type]
    assert worker_options(every)["queues"] is None  # None: every queue


def test_timeout_is_for_async_tasks_only():
    app = KioskApp(connector=InMemoryConnector())
    with pytest.raises(TypeError, match="needs an async task"):

        @app.task(name="sync_with_limit", timeout=5)
        def sync_with_limit() -> None: ...

    @app.task(name="async_with_limit", timeout=5, retry=3)
    async def async_with_limit() -> None: ...

    assert async_with_limit.name == "async_with_limit"
    assert isinstance(async_with_limit.retry_strategy, ShutdownRetry)
    assert async_with_limit.retry_strategy.policy == RetryStrategy(max_attempts=3)


def test_shutdown_retry_retries_cancellations_and_defers_to_the_policy_otherwise():
    job = Job(id=1, queue="default", lock=None, queueing_lock=None, task_name="t", attempts=5)
    none = ShutdownRetry(None)
    assert none.get_retry_decision(exception=asyncio.CancelledError(), job=job) is not None
    assert none.get_retry_decision(exception=exceptions.JobAborted(), job=job) is not None
    assert none.get_retry_decision(exception=ValueError(), job=job) is None
    three = ShutdownRetry(RetryStrategy(max_attempts=3))
    assert three.get_retry_decision(exception=asyncio.CancelledError(), job=job) is not None
    assert three.get_retry_decision(exception=ValueError(), job=job) is None  # 5 >= 3 attempts
    assert (
        three.get_retry_decision(
            exception=ValueError(),
            job=Job(
                id=1, queue="default", lock=None, queueing_lock=None, task_name="t", attempts=1
            ),
        )
        is not None
    )
