"""Helpers for the dashboard tests: sign in over HTTP, read forms, defer jobs."""

from __future__ import annotations

import re
import time

import httpx

from kiosk import db, queue
from tests.support.config import ADMIN_TOKEN
from tests.support.processes import TLS

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# A job_outcomes row without its job's finish (workers write both together: kiosk/jobs/finisher.py).
_INSERT_OUTCOME = """
    INSERT INTO job_outcomes (
        job_id, attempt, task_name, queue_name, worker_id, worker_name, status,
        started_at, ended_at, duration_seconds, result, error_type, error_message, traceback
    ) VALUES (
        %(job_id)s, %(attempt)s, %(task_name)s, %(queue_name)s, %(worker_id)s, %(worker_name)s,
        %(status)s, to_timestamp(%(started_at)s), to_timestamp(%(ended_at)s),
        %(duration_seconds)s, %(result)s::jsonb, %(error_type)s, %(error_message)s, %(traceback)s
    )
"""


def sign_in(base_url: str, operator: str = "ana") -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False, verify=TLS)
    response = client.post(
        "/admin/login", data={"token": ADMIN_TOKEN, "operator": operator, "next": "/admin/"}
    )
    assert response.status_code == 303, response.text
    return client


def csrf_of(client: httpx.Client, path: str = "/admin/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return _CSRF.search(page.text).group(1)


async def defer(task: str, queue_name: str = "default", **kwargs) -> int:
    async with db.transaction() as conn:
        return await queue.defer(conn, task, queue=queue_name, **kwargs)


async def record_outcome(
    job_id: int,
    attempt: int,
    status: str,
    *,
    task: str = "demo.task",
    queue_name: str = "default",
    error: Exception | None = None,
    traceback: str | None = None,
    result: str | None = None,
) -> None:
    """The `job_outcomes` row the worker middleware writes for an attempt, with its own SQL."""
    now = time.time()
    row = {
        "job_id": job_id,
        "attempt": attempt,
        "task_name": task,
        "queue_name": queue_name,
        "worker_id": None,
        "worker_name": "test-worker",
        "status": status,
        "started_at": now - 0.25,
        "ended_at": now,
        "duration_seconds": 0.25,
        "result": result,
        "error_type": None,
        "error_message": None,
        "traceback": traceback,
    }
    if error is not None:
        row.update(error_type=type(error).__name__, error_message=str(error))
    async with db.transaction() as conn:
        await conn.execute(_INSERT_OUTCOME, row)
