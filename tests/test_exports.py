"""Order exports: a long job that reports progress, run by a real worker, downloadable when done."""

import csv
import datetime as dt
import io

import httpx
import psycopg
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import Api, Worker, wait_for

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Kiosk-Actor": "ana"}
RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


def seed_orders(database_url: str) -> None:
    """1,200 orders in January 2026 (3 pages of 500), one before and one after the range."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO products (sku, name, price_cents, stock) VALUES ('tea', 'Tea', 150, 0)")
        conn.execute(
            """
            INSERT INTO orders (id, status, total_cents, customer_email, expires_at, created_at)
            SELECT gen_random_uuid(), CASE WHEN n % 3 = 0 THEN 'paid' ELSE 'expired' END, 150 * n,
                   CASE WHEN n = 7 THEN '=HYPERLINK("http://evil")' ELSE 'c' || n || '@example.com' END,
                   ts + interval '30 minutes', ts
            FROM generate_series(1, 1200) AS n,
                 LATERAL (SELECT timestamptz '2026-01-01 00:00Z' + n * interval '30 minutes') AS t(ts)
            UNION ALL
            SELECT gen_random_uuid(), 'paid', 1, NULL, now(), timestamptz '2025-12-31 23:59Z'
            UNION ALL
            SELECT gen_random_uuid(), 'paid', 1, NULL, now(), timestamptz '2026-02-01 00:00Z'
            """
        )
        conn.execute("INSERT INTO order_items SELECT id, 'tea', 'Tea', 150, 2 FROM orders")


@pytest.fixture
def api(env, log_dir):
    server = Api(env, log_dir)
    yield httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
    server.stop()


def test_bad_ranges_are_refused_and_nothing_is_stored(api, database_url):
    for body, reason in [
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "after"),
        ({"from": "2026-01-01T00:00:00", "to": "2026-02-01T00:00:00"}, "time zone"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "366 days"),
    ]:
        response = api.post("/admin/exports", json=body)
        assert response.status_code == 422 and reason in response.json()["detail"], response.text
    assert api.post("/admin/exports", json={"from": "yesterday"}).status_code == 422
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0
    assert httpx.post(f"{api.base_url}/admin/exports", json=RANGE).status_code == 401


def test_export_runs_in_a_worker_reports_progress_and_downloads(api, env, log_dir, database_url):
    seed_orders(database_url)
    export = api.post("/admin/exports", json=RANGE)
    assert export.status_code == 202, export.text
    export_id, job_id = export.json()["id"], export.json()["job_id"]
    assert api.get(f"/admin/exports/{export_id}/download").status_code == 409  # not run yet

    worker = Worker(env, log_dir, "--queues=exports")
    try:
        done = wait_for(lambda: (e := api.get(f"/admin/exports/{export_id}").json())["status"] == "done" and e,
                        timeout=90, what="the export to finish")
    finally:
        worker.stop()
    assert done["row_count"] == 1200 and done["percent"] == 100
    assert done["message"] == "exported 1200 orders"

    job = api.get(f"/admin/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["queue_name"] == "exports"
    assert job["progress"]["percent"] == 100
    assert job["progress"]["result"] == {"export_id": export_id, "rows": 1200, "bytes": done["size_bytes"],
                                         "download": f"/admin/exports/{export_id}/download"}

    download = api.get(f"/admin/exports/{export_id}/download")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"].startswith('attachment; filename="orders-20260101-20260201-')
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 1200
    assert rows[0]["created_at"] == "2026-01-01T00:30:00+00:00" and rows[0]["items"] == "tea x2"
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)
    assert rows[6]["customer_email"] == "'=HYPERLINK(\"http://evil\")"  # no formula in a spreadsheet

    entry = api.get("/admin/audit").json()["entries"][0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("ana", "export.create", f"export:{export_id}")
    assert [e["id"] for e in api.get("/admin/exports").json()] == [export_id]
    assert api.get("/admin/exports/00000000-0000-0000-0000-000000000000").status_code == 404


async def test_rerunning_a_finished_export_changes_nothing(pool, database_url):
    from kiosk import db, exports

    seed_orders(database_url)
    async with db.transaction() as conn:
        export = await exports.request_export(
            conn, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "test")
    first = await exports.run_export(str(export["id"]), export["job_id"], page_size=10)
    again = await exports.run_export(str(export["id"]), export["job_id"], page_size=10)
    assert first["rows"] == 47 and again == {"export_id": str(export["id"]), "rows": 47, "already_done": True}
