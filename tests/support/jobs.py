"""Helpers for the worker tests: worker processes on a test app, side-effect tables, SQL polling."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.support.processes import Process, child_env

# Small thresholds so that a dead worker is noticed in seconds (the sweep itself runs each minute;
# tests.support.sweep_app runs it every 2 s too).
FAST = {"KIOSK_WORKER_HEARTBEAT_INTERVAL": "1", "KIOSK_WORKER_STALLED_AFTER": "3"}

TABLES = """
CREATE TABLE IF NOT EXISTS test_job_starts
    (key text, attempt int, pid int, at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS test_job_effects
    (key text, attempt int, pid int, at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS test_ticks (tick bigint, pid int, at timestamptz DEFAULT now());
"""


class AppWorker(Process):
    """`procrastinate --app=<app> worker <args>`, by default on the test tasks."""

    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *args: str,
        app: str = "tests.support.worker_app.app",
        name: str = "worker",
        **env: str,
    ):
        argv = [sys.executable, "-m", "procrastinate", f"--app={app}", "worker", *args]
        super().__init__(name, argv, child_env(database_url, **{**FAST, **env}), log_dir)


class Sql:
    """One autocommit connection for the test's own reads and writes while workers run."""

    def __init__(self, database_url: str):
        self.conn = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)

    def all(self, query: str, *params: Any) -> list[dict[str, Any]]:
        return self.conn.execute(query, params or None).fetchall()

    def one(self, query: str, *params: Any) -> dict[str, Any] | None:
        return self.conn.execute(query, params or None).fetchone()

    def value(self, query: str, *params: Any) -> Any:
        row = self.conn.execute(query, params or None).fetchone()
        return None if row is None else next(iter(row.values()))

    def job(self, job_id: int) -> dict[str, Any]:
        row = self.one("SELECT * FROM procrastinate_jobs WHERE id = %s", job_id)
        assert row is not None, f"job {job_id} is gone"
        return row

    def outcomes(self, job_id: int) -> list[dict[str, Any]]:
        return self.all("SELECT * FROM job_outcomes WHERE job_id = %s ORDER BY attempt, id", job_id)

    def close(self) -> None:
        self.conn.close()


async def defer(task_name: str, **kwargs: Any) -> int:
    """Defer a job the way application code does (needs the `pool` fixture)."""
    from kiosk import db, queue

    async with db.transaction() as conn:
        job_id = await queue.defer(conn, task_name, **kwargs)
    assert job_id is not None
    return job_id
