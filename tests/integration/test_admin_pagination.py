"""Every admin list is paginated the same way, and the API's text search is bounded in time.

`limit` and `cursor` (the `next_cursor` of the previous page) on jobs, audit, exports, workers
devices and deliveries (schedules: docs/schedules.md); periodic tasks and queues are short lists
fixed by the code. On main the workers list had no limit and `GET /admin/jobs?q=` ran with no
statement timeout.
"""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from tests.support import Api
from tests.support.config import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def api(env, log_dir):
    server = Api(env, log_dir)
    yield httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
    server.stop()


def walk(api: httpx.Client, path: str, key: str, limit: int) -> list[list]:
    """Every page of a list, following next_cursor."""
    pages, cursor = [], None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor is not None else {})}
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None or len(pages) > 20:
            return pages


def test_workers_audit_and_jobs_page_with_limit_and_cursor(api, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) "
            "SELECT now() FROM generate_series(1, 5)"
        )
        conn.execute(
            "INSERT INTO admin_audit (actor, action, target) "
            "SELECT 'ana', 'job.retry', 'job:' || n FROM generate_series(1, 5) AS n"
        )
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name) "
            "SELECT 'default', 'tests.effect' FROM generate_series(1, 5)"
        )
        conn.execute(
            "INSERT INTO devices (name, terminal_ids, token_hash) "
            "SELECT 'kiosk ' || n, ARRAY['T' || n], sha256(n::text::bytea) "
            "FROM generate_series(1, 5) AS n"
        )
        conn.execute(
            "INSERT INTO orders (id, status, total_cents, expires_at) "
            "SELECT gen_random_uuid(), 'paid', 100, now() FROM generate_series(1, 5)"
        )
        conn.execute(
            "INSERT INTO order_deliveries (order_id, kind) SELECT id, 'receipt' FROM orders"
        )
    for path, key in [
        ("/admin/workers", "workers"),
        ("/admin/audit", "entries"),
        ("/admin/jobs", "jobs"),
        ("/admin/devices", "devices"),
        ("/admin/deliveries", "deliveries"),
    ]:
        pages = walk(api, path, key, limit=2)
        assert [len(page) for page in pages] == [2, 2, 1], path
        ids = [item["id"] for page in pages for item in page]
        assert len(set(ids)) == 5 and ids in (sorted(ids), sorted(ids, reverse=True)), path
        too_many = api.get(path, params={"limit": 100_000})
        assert too_many.status_code == 422 and "detail" in too_many.json(), path
    # The former cursor name still works where it existed.
    first = api.get("/admin/audit", params={"limit": 2}).json()
    assert (
        api.get("/admin/audit", params={"limit": 2, "before": first["next_cursor"]}).json()
        == api.get("/admin/audit", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    )


def test_a_text_search_past_the_timeout_is_a_503_not_a_held_connection(env, log_dir, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
            "SELECT 'default', 'tests.effect', jsonb_build_object('n', n, 'pad', repeat('x', 200)) "
            "FROM generate_series(1, 100000) AS n"
        )
    server = Api({**env, "KIOSK_ADMIN_SEARCH_TIMEOUT_SECONDS": "0.001"}, log_dir)
    try:
        http = httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
        started = time.monotonic()
        response = http.get("/admin/jobs", params={"q": "no such text"})
        assert response.status_code == 503, response.text
        assert "took longer than 0.001 s and was stopped" in response.json()["detail"]
        assert time.monotonic() - started < 5
        # The pooled connection is fine afterwards: the next request is answered.
        assert http.get("/admin/audit").status_code == 200
    finally:
        server.stop()


def test_the_dashboards_exports_page_pages_too(env, log_dir, database_url):
    from tests.support.dashboard import sign_in

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO exports (id, created_from, created_to, status, requested_by, created_at) "
            "SELECT gen_random_uuid(), '2026-01-01Z', '2026-01-02Z', 'done', 'op' || n, "
            "now() - n * interval '1 second' FROM generate_series(1, 60) AS n"
        )
    server = Api(env, log_dir)
    try:
        browser = sign_in(server.url)
        first = browser.get("/admin/ui/exports")
        assert first.status_code == 200 and ">op50<" in first.text and ">op51<" not in first.text
        assert "The newest 20 are kept, each for 7 days" in first.text
        older = (
            first.text.split('rel="next"')[0]
            .rsplit('href="', 1)[1]
            .split('"')[0]
            .replace("&amp;", "&")
        )
        second = browser.get(older)
        assert ">op51<" in second.text and ">op60<" in second.text and ">op50<" not in second.text
        assert browser.get("/admin/ui/exports?before=garbage").status_code == 200  # ignored
    finally:
        server.stop()
