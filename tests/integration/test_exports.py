"""Order exports: a long job that reports progress, run by a real worker, downloadable when done."""

import csv
import datetime as dt
import io

import httpx
import psycopg
import pytest

from tests.support import Api, Worker, wait_for
from tests.support.config import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Kiosk-Actor": "ana"}
RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


def seed_orders(database_url: str) -> None:
    """1,200 orders in January 2026 (3 pages of 500), one before and one after the range."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (sku, name, price_cents, stock) VALUES ('tea', 'Tea', 150, 0)"
        )
        conn.execute(
            """
            INSERT INTO orders (id, status, total_cents, customer_email, expires_at, created_at)
            SELECT gen_random_uuid(), CASE WHEN n % 3 = 0 THEN 'paid' ELSE 'expired' END, 150 * n,
                   CASE WHEN n = 7 THEN '=HYPERLINK("http://evil")'
                        ELSE 'c' || n || '@example.com' END,
                   ts + interval '30 minutes', ts
            FROM generate_series(1, 1200) AS n,
                 LATERAL (SELECT timestamptz '2026-01-01 00:00Z' + n * interval '30 minutes')
                     AS t(ts)
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
        done = wait_for(
            lambda: (e := api.get(f"/admin/exports/{export_id}").json())["status"] == "done" and e,
            timeout=90,
            what="the export to finish",
        )
    finally:
        worker.stop()
    assert done["row_count"] == 1200 and done["percent"] == 100
    assert done["message"] == "exported 1200 orders"

    job = api.get(f"/admin/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["queue_name"] == "exports"
    assert job["progress"]["percent"] == 100
    assert job["progress"]["result"] == {
        "export_id": export_id,
        "rows": 1200,
        "bytes": done["size_bytes"],
        "download": f"/admin/exports/{export_id}/download",
    }

    download = api.get(f"/admin/exports/{export_id}/download")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"].startswith(
        'attachment; filename="orders-20260101-20260201-'
    )
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 1200
    assert rows[0]["created_at"] == "2026-01-01T00:30:00+00:00" and rows[0]["items"] == "tea x2"
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)
    assert rows[6]["customer_email"] == '\'=HYPERLINK("http://evil")'  # no formula in a spreadsheet

    entry = api.get("/admin/audit").json()["entries"][0]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        "ana",
        "export.create",
        f"export:{export_id}",
    )
    assert [e["id"] for e in api.get("/admin/exports").json()["exports"]] == [export_id]
    assert api.get("/admin/exports/00000000-0000-0000-0000-000000000000").status_code == 404


async def test_rerunning_a_finished_export_changes_nothing(pool, database_url):
    from kiosk import db, exports

    seed_orders(database_url)
    async with db.transaction() as conn:
        export = await exports.request_export(
            conn,
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
            "test",
        )
    first = await exports.run_export(str(export["id"]), export["job_id"], fetch_rows=10)
    again = await exports.run_export(str(export["id"]), export["job_id"], fetch_rows=10)
    assert first["rows"] == 47 and again == {
        "export_id": str(export["id"]),
        "rows": 47,
        "already_done": True,
    }


async def request(conn, day: int = 1, by: str = "test"):
    from kiosk import exports

    start = dt.datetime(2026, 1, day, tzinfo=dt.UTC)
    return await exports.request_export(conn, start, start + dt.timedelta(days=1), by)


async def test_the_csv_is_streamed_in_chunks_and_served_back_whole(
    pool, database_url, env, log_dir
):
    """Chunks of a few KiB: the file is many rows of export_chunks, and the download joins them."""
    from kiosk import db, exports

    seed_orders(database_url)
    async with db.transaction() as conn:
        export = await exports.request_export(
            conn,
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
            "test",
        )
    result = await exports.run_export(
        str(export["id"]), export["job_id"], fetch_rows=100, chunk_bytes=4096
    )
    assert result["rows"] == 1200
    with psycopg.connect(database_url) as conn:
        chunks = conn.execute(
            "SELECT seq, octet_length(data) FROM export_chunks WHERE export_id = %s ORDER BY seq",
            (export["id"],),
        ).fetchall()
    assert len(chunks) > 10 and [seq for seq, _ in chunks] == list(range(len(chunks)))
    assert sum(size for _, size in chunks) == result["bytes"]
    assert all(4096 <= size < 4096 + 300 for _, size in chunks[:-1])  # a chunk is written once full

    server = Api(env, log_dir)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(
                f"{server.url}/admin/exports/{export['id']}/download", headers=AUTH
            )
    finally:
        server.stop()
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == result["bytes"] == len(response.content)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 1200 and len({r["order_id"] for r in rows}) == 1200


async def test_an_export_past_the_size_cap_fails_saying_so_and_keeps_no_partial_file(
    pool, database_url
):
    from kiosk import db, exports

    seed_orders(database_url)
    async with db.transaction() as conn:
        export = await exports.request_export(
            conn,
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
            "test",
        )
    result = await exports.run_export(
        str(export["id"]), export["job_id"], chunk_bytes=4096, max_bytes=20_000
    )
    assert "KIOSK_EXPORT_MAX_BYTES (20000 bytes)" in result["error"]
    async with db.transaction() as conn:
        row = await exports.get_export(conn, export["id"])
    assert row["status"] == "failed" and "export a shorter range" in row["error"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0


async def test_at_most_keep_exports_the_oldest_finished_ones_replaced(
    pool, database_url, monkeypatch
):
    """On main any number of exports (each with its CSV) piled up; KIOSK_EXPORT_KEEP bounds them."""
    from kiosk import db, exports
    from kiosk.settings import get_settings

    monkeypatch.setenv("KIOSK_EXPORT_KEEP", "3")
    get_settings.cache_clear()
    try:
        made = []
        for day in (1, 2, 3):
            async with db.transaction() as conn:
                made.append(await request(conn, day))
        await exports.run_export(str(made[0]["id"]), made[0]["job_id"])  # the oldest is done
        async with db.transaction() as conn:
            fourth = await request(conn, 4)
        assert fourth["replaced"] == [made[0]["id"]]
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 3
            assert conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0

        # Three kept, all waiting for their jobs: a fourth is refused and nothing changes.
        with pytest.raises(exports.ExportLimit, match="3 exports are still running"):
            async with db.transaction() as conn:
                await request(conn, 5)
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 3
            assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 4
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_refused_export_is_a_409_and_the_list_is_paginated(api, database_url, env, log_dir):
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n in range(5):  # finished exports, one second apart
            conn.execute(
                "INSERT INTO exports "
                "(id, created_from, created_to, status, requested_by, created_at) "
                "VALUES (gen_random_uuid(), '2026-01-01Z', '2026-01-02Z', 'done', 'x', "
                "now() - %s * interval '1 second')",
                (n,),
            )
    pages, cursor = [], None
    while True:
        page = api.get(
            "/admin/exports", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        pages.append([e["id"] for e in page["exports"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    with psycopg.connect(database_url) as conn:
        newest_first = [
            str(r[0]) for r in conn.execute("SELECT id FROM exports ORDER BY created_at DESC")
        ]
    assert sum(pages, []) == newest_first
    for bad in ("nonsense", "x" * 201):
        response = api.get("/admin/exports", params={"cursor": bad})
        assert response.status_code == 422 and "detail" in response.json(), response.text

    server = Api({**env, "KIOSK_EXPORT_KEEP": "1"}, log_dir)
    try:
        http = httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
        assert http.post("/admin/exports", json=RANGE).status_code == 202  # replaces all five
        refused = http.post("/admin/exports", json=RANGE)
        assert refused.status_code == 409 and "KIOSK_EXPORT_KEEP is 1" in refused.json()["detail"]
    finally:
        server.stop()
