"""The dashboard over HTTP against a real uvicorn: sign-in, cookie, CSRF, paths, pages, actions."""

import datetime as dt
import re

import httpx
import pytest
from procrastinate.jobs import Status

from kiosk import db, queue
from kiosk.dashboard import routes as dashboard_routes
from kiosk.dashboard import session
from tests.support import Api
from tests.support.config import ADMIN_TOKEN
from tests.support.dashboard import csrf_of, defer, record_outcome, sign_in

PAGES = [
    "/admin/",
    "/admin/ui/jobs",
    "/admin/ui/jobs/1",
    "/admin/ui/failed",
    "/admin/ui/workers",
    "/admin/ui/periodic",
    "/admin/ui/schedules",
    "/admin/ui/schedules/1",
    "/admin/ui/audit",
]


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    from tests.support import child_env

    api = Api(child_env(database_url), tmp_path_factory.mktemp("dashboard-logs"))
    yield api
    api.stop()


@pytest.fixture
def anon(server):
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        yield client


@pytest.fixture
def ana(server, database_url):
    client = sign_in(server.url, "ana")
    yield client
    client.close()


async def run_one(status: Status) -> int:
    manager = queue.app.job_manager
    worker_id = await manager.register_worker()
    job = await manager.fetch_job(queues=None, worker_id=worker_id)
    if status is not Status.DOING:
        await manager.finish_job(job, status=status, delete_job=False)
    return job.id


def test_dashboard_paths_never_collide_with_the_json_api(database_url):
    from kiosk.admin import routes as admin_routes
    from kiosk.app import app as asgi_app

    def paths(router):
        return {(m, r.path) for r in router.routes for m in r.methods}

    html = paths(dashboard_routes.router)
    json = paths(admin_routes.router)
    pages = ("/admin/", "/admin/login", "/admin/logout", "/admin/attention")  # the last: a redirect
    assert all(p in pages or p.startswith("/admin/ui/") for _, p in html)
    assert not any(p in pages or p.startswith("/admin/ui/") for _, p in json)
    assert not html & json
    assert not any(
        p.startswith(("/admin/ui", "/admin/log")) or p == "/admin/"
        for p in asgi_app.openapi()["paths"]
    )


def test_signed_out_pages_and_forms_redirect_to_the_login(anon, database_url):
    for path in PAGES:
        response = anon.get(path, params={"refresh": "on"})
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=%2Fadmin%2F"), path
    response = anon.post("/admin/ui/jobs/1/retry", data={"csrf_token": "x"})
    assert (
        response.status_code == 303
        and response.headers["location"] == "/admin/login?next=%2Fadmin%2F"
    )
    login = anon.get("/admin/login")
    assert login.status_code == 200 and 'name="token"' in login.text
    assert "default-src 'none'" in login.headers["content-security-policy"]
    assert (
        login.headers["x-frame-options"] == "DENY" and login.headers["cache-control"] == "no-store"
    )
    assert anon.get("/admin/ui/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_the_stylesheet_is_cached_revalidated_and_nothing_else_is_served(anon):
    css = anon.get("/admin/ui/static/dashboard.css")
    assert css.status_code == 200 and css.headers["cache-control"] == "public, max-age=300"
    assert (
        css.headers["x-content-type-options"] == "nosniff"
        and "default-src 'none'" in css.headers["content-security-policy"]
    )
    again = anon.get(
        "/admin/ui/static/dashboard.css", headers={"If-None-Match": css.headers["etag"]}
    )
    assert again.status_code == 304 and again.headers["cache-control"] == "public, max-age=300"
    for path in (
        "/admin/ui/static/nope.css",
        "/admin/ui/static/../routes.py",
        "/admin/ui/static/%2e%2e/routes.py",
        "/admin/ui/static/",
    ):
        assert anon.get(path).status_code == 404, path


def test_login_sets_a_signed_httponly_strict_cookie(anon, database_url):
    wrong = anon.post("/admin/login", data={"token": "wrong-token-0123456789", "operator": "eve"})
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert "set-cookie" not in wrong.headers and ADMIN_TOKEN not in wrong.text

    ok = anon.post(
        "/admin/login",
        data={"token": ADMIN_TOKEN, "operator": "ana <b>", "next": "/admin/ui/jobs?status=failed"},
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/ui/jobs?status=failed"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {
        "httponly",
        "max-age",
        "path",
    } <= attributes and "secure" not in attributes  # loopback http
    assert (
        "samesite=strict" in cookie.lower()
        and "path=/admin" in cookie.lower()
        and "max-age=43200" in cookie.lower()
    )
    assert ADMIN_TOKEN not in cookie
    page = anon.get("/admin/")
    assert page.status_code == 200 and "ana b" in page.text  # the name, reduced to safe characters

    # The JSON API takes only the bearer token: the cookie alone gets 401 (no CSRF through it).
    assert anon.get("/admin/queues").status_code == 401
    assert anon.post("/admin/jobs/retry", json={"status": "failed"}).status_code == 401

    # An open redirect through `next` is refused.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/elsewhere"):
        response = anon.post("/admin/login", data={"token": ADMIN_TOKEN, "next": target})
        assert response.headers["location"] == "/admin/", target


async def test_actions_need_the_csrf_token_and_are_audited(ana, pool):
    job_id = await defer("demo.csrf", n=1)
    await run_one(Status.FAILED)
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        refused = ana.post(f"/admin/ui/jobs/{job_id}/retry", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    async with db.transaction() as conn:
        assert (
            await db.fetch_one(
                conn, "SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)
            )
        )["status"] == "failed"

    token = csrf_of(ana, f"/admin/ui/jobs/{job_id}")
    done = ana.post(
        f"/admin/ui/jobs/{job_id}/retry", data={"csrf_token": token, "next": "/admin/ui/failed"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/ui/failed"
    page = ana.get("/admin/ui/failed")
    assert f"Job {job_id}: retried." in page.text
    assert (
        "Job" not in ana.get("/admin/ui/failed").text.split("<main>")[1].split("<h1>")[0]
    )  # one-shot message

    # A refused action answers the JSON API's status (the one table, kiosk/http_errors.py) with
    # the reason on the error page, and a way back to where the form came from.
    again = ana.post(
        f"/admin/ui/jobs/{job_id}/retry", data={"csrf_token": token, "next": "/admin/ui/failed"}
    )
    as_json = ana.post(
        f"/admin/jobs/{job_id}/retry", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert again.status_code == as_json.status_code == 409
    assert "only failed, cancelled, aborted jobs can be retried" in again.text
    assert 'href="/admin/ui/failed">Back' in again.text

    audit = ana.get("/admin/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()[
        "entries"
    ]
    assert [(e["actor"], e["action"], e["target"]) for e in audit] == [
        ("ana", "job.retry", f"job:{job_id}")
    ]
    assert audit[0]["remote_addr"] == "127.0.0.1"
    assert f"job:{job_id}" in ana.get("/admin/ui/audit").text

    logout = ana.post("/admin/logout", data={"csrf_token": token})
    assert logout.status_code == 303 and logout.headers["location"] == "/admin/login"
    assert ana.get("/admin/").status_code == 303


async def test_pages_show_queues_jobs_and_escape_everything(ana, pool):
    evil = "<script>alert(1)</script>"
    ids = [await defer("demo.page", "mail", order=f"o-{n}") for n in range(3)]
    await defer("demo.other", "payments", note=evil)
    await run_one(Status.SUCCEEDED)
    await run_one(Status.FAILED)

    overview = ana.get("/admin/")
    assert overview.status_code == 200
    assert (
        'aria-label="Queue mail"' in overview.text
        and 'aria-label="Queue payments"' in overview.text
    )
    assert overview.text.count("<svg") == 2 and 'class="bar"' in overview.text
    assert "<script" not in overview.text
    assert ana.get("/admin/", params={"window": 1440}).status_code == 200
    assert ana.get("/admin/", params={"window": "x"}).status_code == 200
    assert '<meta http-equiv="refresh"' in ana.get("/admin/", params={"refresh": "on"}).text

    listing = ana.get("/admin/ui/jobs", params={"q": "script"})
    assert "&lt;script&gt;" in listing.text and evil not in listing.text
    detail = ana.get(f"/admin/ui/jobs/{ids[1]}")
    assert detail.status_code == 200 and "o-1" in detail.text
    assert [t in detail.text for t in ("deferred", "started", "failed")] == [True] * 3
    assert ana.get("/admin/ui/jobs/999999").status_code == 404

    page = ana.get(
        "/admin/ui/jobs", params={"task": "demo.page", "status": "bogus", "deferred_after": "soon"}
    )
    assert "status: one of" in page.text and "deferred_after: not a date and time" in page.text
    assert all(f'/admin/ui/jobs/{i}"' in page.text for i in ids)


async def test_jobs_keyset_pagination(ana, pool):
    from kiosk.dashboard.routes import PAGE_SIZE

    ids = [await defer("demo.many", n=n) for n in range(PAGE_SIZE + 3)]
    first = ana.get("/admin/ui/jobs", params={"task": "demo.many"}).text
    assert f'/admin/ui/jobs/{ids[-1]}"' in first and f'/admin/ui/jobs/{ids[2]}"' not in first
    older = f"before={ids[3]}"
    assert older in first
    second = ana.get(f"/admin/ui/jobs?task=demo.many&{older}").text
    assert all(f'/admin/ui/jobs/{i}"' in second for i in ids[:3]) and "Newest" in second


async def test_failed_page_bulk_retry_and_cancel(ana, pool):
    for n in range(3):
        await defer("demo.bulk", "mail", n=n)
        await run_one(Status.FAILED)
    await defer("demo.keep", "mail", n=9)
    await run_one(Status.FAILED)
    page = ana.get("/admin/ui/failed", params={"task": "demo.bulk"})
    assert "Retry all 3" in page.text
    token = csrf_of(ana)

    no_filter = ana.post("/admin/ui/bulk/retry", data={"csrf_token": token, "confirm": "yes"})
    assert "needs a filter" in ana.get(no_filter.headers["location"]).text
    done = ana.post(
        "/admin/ui/bulk/retry",
        data={
            "csrf_token": token,
            "status": "failed",
            "task": "demo.bulk",
            "next": "/admin/ui/failed?task=demo.bulk",
        },
    )
    assert done.headers["location"] == "/admin/ui/failed?task=demo.bulk"
    after = ana.get(done.headers["location"]).text
    assert (
        "3 of 3 matching jobs retried." in after and "Cancel all 3" in after
    )  # now waiting to retry

    cancelled = ana.post(
        "/admin/ui/bulk/cancel",
        data={"csrf_token": token, "status": "todo", "min_attempts": "1", "task": "demo.bulk"},
    )
    assert "3 of 3 matching jobs cancelled." in ana.get(cancelled.headers["location"]).text
    async with db.transaction() as conn:
        rows = await db.fetch_all(
            conn, "SELECT task_name, status::text FROM procrastinate_jobs ORDER BY id"
        )
    assert [r["status"] for r in rows] == ["cancelled"] * 3 + ["failed"]
    entry = ana.get("/admin/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()[
        "entries"
    ][0]
    assert entry["action"] == "jobs.bulk_cancel" and entry["actor"] == "ana"
    assert entry["details"]["filter"] == {"status": "todo", "task": "demo.bulk", "min_attempts": 1}


async def test_workers_periodic_and_audit_pages(ana, pool):
    manager = queue.app.job_manager
    live = await manager.register_worker()
    stalled = await manager.register_worker()
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
            "WHERE id = %s",
            (stalled,),
        )
    job_id = await defer("demo.w")
    await manager.fetch_job(queues=None, worker_id=live)
    workers = ana.get("/admin/ui/workers").text
    assert "stalled" in workers and "live" in workers and f"/admin/ui/jobs/{job_id}" in workers
    assert ana.get("/admin/ui/periodic").status_code == 200
    token = csrf_of(ana)
    missing = ana.post("/admin/ui/periodic/nope/run", data={"csrf_token": token})
    assert missing.status_code == 404 and "no periodic task named &#39;nope&#39;" in missing.text
    assert ana.get("/admin/ui/audit", params={"before": "x"}).status_code == 200


async def test_throughput_series_counts_every_minute(pool):
    from kiosk.admin import jobs

    await defer("demo.series", n=1)
    await run_one(Status.SUCCEEDED)
    await defer("demo.series", n=2)
    await run_one(Status.FAILED)
    async with db.transaction() as conn:
        series = await jobs.throughput_series(conn, 5)
    assert len(series) == 5 and series == sorted(series, key=lambda r: r["minute"])
    assert sum(r["succeeded"] for r in series) == 1 and sum(r["failed"] for r in series) == 1
    assert (
        dt.timedelta(0) <= dt.datetime.now(dt.UTC) - series[-1]["minute"] < dt.timedelta(minutes=2)
    )


async def test_filtered_queries_are_never_prepared(pool):
    """A generic plan ignores how rare a status is: 150 ms, not 2, on a million jobs (bench/)."""
    from kiosk.admin import jobs

    flt = jobs.JobFilter(status="todo", min_attempts=1)
    async with db.transaction() as conn:
        for _ in range(8):  # psycopg prepares after 5
            await jobs.list_jobs(conn, flt)
            await jobs.count_jobs(conn, flt)
        prepared = await db.fetch_all(conn, "SELECT statement FROM pg_prepared_statements")
    assert not [p for p in prepared if "procrastinate_jobs j" in p["statement"]]


async def test_slow_statements_are_cancelled(pool):
    import psycopg

    from kiosk.admin import jobs

    with pytest.raises(psycopg.errors.QueryCanceled):
        async with db.transaction() as conn:
            await jobs.bound_statements(conn, 0.05)
            await conn.execute("SELECT pg_sleep(2)")
    async with db.transaction() as conn:  # the bound ends with its transaction
        await conn.execute("SELECT pg_sleep(0.1)")


async def test_job_page_shows_every_attempt_and_failed_page_the_last_error(ana, pool):
    job_id = await defer("demo.outcomes", n=1)
    await run_one(Status.FAILED)
    quiet = await defer("demo.outcomes", n=2)
    await run_one(Status.FAILED)  # failed without an outcome row (e.g. before outcomes existed)
    await record_outcome(
        job_id,
        1,
        "failed",
        task="demo.outcomes",
        error=ValueError("card <b>declined</b>"),
        traceback='Traceback (most recent call last):\n  File "x.py"\nValueError: card declined',
    )
    await record_outcome(
        job_id, 2, "timed_out", task="demo.outcomes", error=TimeoutError("over 5 s")
    )

    page = ana.get(f"/admin/ui/jobs/{job_id}").text
    attempts = page.split('id="outcomes-h"')[1]
    assert attempts.index("ValueError") < attempts.index("TimeoutError")
    assert "card &lt;b&gt;declined&lt;/b&gt;" in attempts and "<b>declined" not in attempts
    assert "<details>" in attempts and "<summary>Traceback</summary>" in attempts
    assert "File &#34;x.py&#34;" in attempts and "timed out" in attempts and "250 ms" in attempts
    assert "No attempt recorded yet" in ana.get(f"/admin/ui/jobs/{quiet}").text

    failed = ana.get("/admin/ui/failed").text
    row = failed.split(f'href="/admin/ui/jobs/{job_id}"')[1].split("</tr>")[0]
    assert (
        "TimeoutError" in row
        and "over 5 s" in row
        and "(attempt 2)" in row
        and "ValueError" not in row
    )
    quiet_row = failed.split(f'href="/admin/ui/jobs/{quiet}"')[1].split("</tr>")[0]
    assert "Error" not in quiet_row and "Last error" in failed


async def test_last_errors_of_many_jobs_in_one_query(pool):
    from kiosk.jobs import outcomes

    await record_outcome(1, 1, "failed", error=KeyError("a"))
    await record_outcome(1, 2, "failed", error=RuntimeError("b"))
    await record_outcome(2, 1, "succeeded")
    await record_outcome(3, 1, "worker_lost", error=Exception("worker 7 stopped"))
    async with db.transaction() as conn:
        last = await outcomes.last_errors(conn, [1, 2, 3, 4])
        assert await outcomes.last_errors(conn, []) == {}
    assert {k: (v.attempt, v.status, v.error_type) for k, v in last.items()} == {
        1: (2, "failed", "RuntimeError"),
        3: (1, "worker_lost", "Exception"),
    }


async def test_schedules_pages_and_run_now(ana, pool, database_url):
    from kiosk.audit import Operator
    from kiosk.schedules import service
    from kiosk.schedules.spec import ScheduleSpec

    secret = "s3cr3t-in-a-header"
    spec = ScheduleSpec(
        name="price-sync <b>",
        cron="0 0 1 1 *",
        url="http://93.184.215.14/sync",
        method="POST",
        headers={"X-Api-Key": secret, "Accept": "text/plain"},
    )
    schedule_id = (await service.create(spec, by=Operator("setup"))).schedule.id
    listing = ana.get("/admin/ui/schedules").text
    assert 'href="/admin/ui/schedules" aria-current="page"' in listing
    assert "price-sync &lt;b&gt;" in listing and "0 0 1 1 *" in listing and "never ran" in listing
    assert "http://93.184.215.14/sync" in listing and "active" in listing and "Run now" in listing
    detail = ana.get(f"/admin/ui/schedules/{schedule_id}").text
    assert secret not in listing + detail
    assert (
        "X-Api-Key: ********" in detail
        and "Accept: text/plain" in detail
        and "No run yet." in detail
    )

    token = csrf_of(ana)
    assert ana.post(f"/admin/ui/schedules/{schedule_id}/run", data={}).status_code == 403
    done = ana.post(
        f"/admin/ui/schedules/{schedule_id}/run",
        data={"csrf_token": token, "next": "/admin/ui/schedules"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/ui/schedules"
    async with db.transaction() as conn:
        run = await db.fetch_one(conn, "SELECT id, job_id, trigger FROM schedule_runs")
    assert run["trigger"] == "manual"
    assert f"Run {run['id']} queued as job {run['job_id']}." in ana.get("/admin/ui/schedules").text
    history = ana.get(f"/admin/ui/schedules/{schedule_id}").text.split('id="history-h"')[1]
    assert (
        "manual" in history
        and "pending" in history
        and f'href="/admin/ui/jobs/{run["job_id"]}"' in history
    )
    missing = ana.post("/admin/ui/schedules/999999/run", data={"csrf_token": token})
    assert missing.status_code == 404 and "schedule 999999 not found" in missing.text
    assert ana.get("/admin/ui/schedules/999999").status_code == 404

    audit = ana.get("/admin/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()[
        "entries"
    ]
    assert [(e["actor"], e["action"], e["target"]) for e in audit] == [
        ("ana", "schedule.run", f"schedule:{schedule_id}"),
        ("setup", "schedule.create", f"schedule:{schedule_id}"),
    ]
    assert f'href="/admin/ui/schedules/{schedule_id}"' in ana.get("/admin/ui/audit").text


async def test_schedule_history_is_paginated_newest_first(ana, pool):
    from kiosk.audit import Operator
    from kiosk.dashboard.routes import PAGE_SIZE
    from kiosk.schedules import service
    from kiosk.schedules.spec import ScheduleSpec

    spec = ScheduleSpec(
        name="busy", cron="* * * * *", url="http://93.184.215.14/busy", active=False
    )
    schedule_id = (await service.create(spec, by=Operator("setup"))).schedule.id
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for, outcome, attempts,"
            " http_status, duration_ms, finished_at, error)"
            " SELECT %s, 'cron', now() - make_interval(mins => n),"
            " CASE WHEN mod(n, 2) = 0 THEN 'success' ELSE 'failed' END, 1,"
            " CASE WHEN mod(n, 2) = 0 THEN 200 ELSE 503 END, 40 + n, now(),"
            " CASE WHEN mod(n, 2) = 1 THEN 'HTTP 503 run-' || n END FROM generate_series(1, %s) n",
            (schedule_id, PAGE_SIZE + 3),
        )
    first = ana.get(f"/admin/ui/schedules/{schedule_id}").text
    assert first.count("<tr>") == PAGE_SIZE + 1  # the header row too
    assert [int(n) for n in re.findall(r"HTTP 503 run-(\d+)", first)] == list(
        range(1, PAGE_SIZE + 1, 2)
    )
    assert "41 ms" in first and "None: the schedule is paused." in first
    older = re.search(r'href="(/admin/ui/schedules/\d+\?cursor=[^"]+)" rel="next"', first).group(1)
    second = ana.get(older.replace("&amp;", "&")).text
    assert second.count("<tr>") == 3 + 1 and "« Newest" in second
    assert [int(n) for n in re.findall(r"HTTP 503 run-(\d+)", second)] == [
        PAGE_SIZE + 1,
        PAGE_SIZE + 3,
    ]
    bad = ana.get(f"/admin/ui/schedules/{schedule_id}", params={"cursor": "nope"})
    assert bad.status_code == 200 and "cursor: not a page of this history (ignored)" in bad.text
