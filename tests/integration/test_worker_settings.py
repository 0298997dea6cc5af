"""Worker settings: KIOSK_WORKER_* and procrastinate's flags, validated, mapped, documented."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from procrastinate import RetryStrategy, exceptions
from procrastinate.jobs import Job
from procrastinate.testing import InMemoryConnector

from kiosk.jobs.app import KioskApp, worker_options
from kiosk.jobs.retry import ShutdownRetry
from kiosk.settings import Settings
from tests.support.jobs import TABLES, AppWorker, Sql, defer
from tests.support import PROJECT_DIR, wait_for

VALID = {
    "DATABASE_URL": "postgresql://127.0.0.1:1/none",
    "KIOSK_ADMIN_TOKEN": "x" * 20,
    "MP_ACCESS_TOKEN": "token",
    "MP_WEBHOOK_SECRET": "secret",
    "PATH": "/usr/bin:/bin",
}


def procrastinate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=tasks.app", *args],
        env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
    )


def test_tasks_app_needs_no_database_nor_variables():
    result = procrastinate("worker", "--help", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "--shutdown-graceful-timeout" in result.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"KIOSK_WORKER_CONCURRENCY": "0"}, "KIOSK_WORKER_CONCURRENCY Input should be greater than or equal to 1"),
        ({"KIOSK_WORKER_CONCURRENCY": "12"}, "KIOSK_WORKER_CONCURRENCY must not exceed KIOSK_DB_POOL_MAX_SIZE (10)"),
        ({"KIOSK_WORKER_QUEUES": "payments,bad queue"}, "KIOSK_WORKER_QUEUES 'bad queue' is not a queue name"),
        ({"KIOSK_WORKER_STALLED_AFTER": "15"}, "KIOSK_WORKER_STALLED_AFTER must be at least twice KIOSK_WORKER_HEARTBEAT_INTERVAL"),
        ({"KIOSK_WORKER_SHUTDOWN_TIMEOUT": "soon"}, "KIOSK_WORKER_SHUTDOWN_TIMEOUT Input should be a valid number"),
    ],
)
def test_a_worker_with_a_bad_setting_stops_with_one_line(change, expected):
    result = procrastinate("worker", env={**VALID, **change})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kiosk: invalid configuration: ") and expected in lines[0], lines[0]


def test_flags_get_the_same_limits(database_url):
    result = procrastinate("worker", "--concurrency=50", env={**VALID, "DATABASE_URL": database_url})
    assert result.returncode == 2
    assert "kiosk: invalid worker option: worker concurrency must be between 1 and the pool size" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_map_onto_procrastinate_worker_options():
    settings = Settings(**VALID, admin_token="x" * 20, worker_concurrency=4,  # type: ignore[arg-type]
                        worker_queues=" payments, mail ,", worker_shutdown_timeout=25)
    assert worker_options(settings) == {
        "concurrency": 4,
        "queues": ["payments", "mail"],
        "shutdown_graceful_timeout": 25.0,
        "update_heartbeat_interval": 10.0,
        "stalled_worker_timeout": 30.0,
    }
    every = Settings(**VALID, admin_token="x" * 20)  # type: ignore[arg-type]
    assert worker_options(every)["queues"] is None  # None: every queue


async def test_queues_come_from_the_setting_and_a_flag_overrides_it(pool, database_url, log_dir):
    sql = Sql(database_url)
    sql.conn.execute(TABLES)
    other = await defer("tests.effect", key="default-queue")
    mine = await defer("tests.effect", key="alpha-queue", queue="alpha")
    worker = AppWorker(database_url, log_dir, KIOSK_WORKER_QUEUES="alpha")
    try:
        wait_for(lambda: sql.job(mine)["status"] == "succeeded", timeout=60, what="the alpha job")
        assert sql.job(other)["status"] == "todo"
    finally:
        worker.stop()
    worker = AppWorker(database_url, log_dir, "--queues=default", KIOSK_WORKER_QUEUES="alpha")
    try:
        wait_for(lambda: sql.job(other)["status"] == "succeeded", timeout=60, what="the default job")
    finally:
        worker.stop()
        sql.close()


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
    assert three.get_retry_decision(
        exception=ValueError(), job=Job(id=1, queue="default", lock=None, queueing_lock=None,
                                        task_name="t", attempts=1)) is not None
