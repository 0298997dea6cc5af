"""Helpers for the dashboard tests: sign in over HTTP, read forms, defer jobs."""

from __future__ import annotations

import re

import httpx

from kiosk import db, queue
from tests.conftest import ADMIN_TOKEN

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(base_url: str, operator: str = "ana") -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)
    response = client.post("/admin/login", data={"token": ADMIN_TOKEN, "operator": operator, "next": "/admin/"})
    assert response.status_code == 303, response.text
    return client


def csrf_of(client: httpx.Client, path: str = "/admin/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return _CSRF.search(page.text).group(1)


async def defer(task: str, queue_name: str = "default", **kwargs) -> int:
    async with db.transaction() as conn:
        return await queue.defer(conn, task, queue=queue_name, **kwargs)
