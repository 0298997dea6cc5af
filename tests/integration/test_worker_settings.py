"""Worker settings: KIOSK_WORKER_* and procrastinate's flags, validated, mapped, documented."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import PROJECT_DIR, wait_for
from tests.support.jobs import TABLES, AppWorker, Sql, defer
from tests.support.startup import VALID


def procrastinate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=tasks.app", *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_tasks_app_needs_no_database_nor_variables():
    result = procrastinate("worker", "--help", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "--shutdown-graceful-timeout" in result.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"KIOSK_WORKER_CONCURRENCY": "0"},
            "KIOSK_WORKER_CONCURRENCY Input should be greater than or equal to 1",
        ),
        (
            {"KIOSK_WORKER_CONCURRENCY": "12"},
            "KIOSK_WORKER_CONCURRENCY must not exceed KIOSK_DB_POOL_MAX_SIZE (10)",
        ),
        (
            {"KIOSK_WORKER_QUEUES": "payments,bad queue"},
            "KIOSK_WORKER_QUEUES 'bad queue' is not a queue name",
        ),
        (
            {"KIOSK_WORKER_STALLED_AFTER": "15"},
            "KIOSK_WORKER_STALLED_AFTER must be at least twice KIOSK_WORKER_HEARTBEAT_INTERVAL",
        ),
        (
            {"KIOSK_WORKER_SHUTDOWN_TIMEOUT": "soon"},
            "KIOSK_WORKER_SHUTDOWN_TIMEOUT Input should be a valid number",
        ),
    ],
)
def test_a_worker_with_a_bad_setting_stops_with_one_line(change, expected):
    result = procrastinate("worker", env={**VALID, **change})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kiosk: invalid configuration: ") and expected in lines[0], lines[0]


def test_flags_get_the_same_limits(database_url):
    result = procrastinate(
        "worker", "--concurrency=50", env={**VALID, "DATABASE_URL": database_url}
    )
    assert result.returncode == 2
    assert (
        "kiosk: invalid worker option: worker concurrency must be between 1 and the pool size"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


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
        wait_for(
            lambda: sql.job(other)["status"] == "succeeded", timeout=60, what="the default job"
        )
    finally:
        worker.stop()
        sql.close()
