"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real uvicorn
and a real worker that fails a job until the test lets it succeed.

Skipped on a machine without /usr/bin/chromium (`apt-get install chromium`; CI installs it in
.ci/run). Playwright only drives that binary: never `playwright install`.
"""

import asyncio
import os
import re
import sys
from pathlib import Path

import psycopg
import pytest

from kiosk.dashboard import session
from tests.support import Api, Process, Worker, child_env
from tests.support.config import ADMIN_TOKEN
from tests.support.dashboard import defer
from tests.support.dashboard_tasks import MARKER_TABLE
from tests.support.schedules import ALLOW_LOOPBACK, Target, create

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)
async_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is in the dev extra: ./scripts/bootstrap"
)
expect = async_api.expect
SLOW = 60_000  # ms: a worker, a 2-core machine shared with other suites


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    """A real API and a real worker running tests.support.dashboard_tasks (the flaky task).

    Both may reach 127.0.0.1 (KIOSK_OUTBOUND_ALLOW_HOSTS): schedules call a local target.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(MARKER_TABLE)
    logs = tmp_path_factory.mktemp("dashboard-browser")
    env = child_env(database_url, **ALLOW_LOOPBACK)
    api = Api(env, logs)
    worker = Process(
        "worker",
        [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=tests.support.dashboard_tasks.app",
            "worker",
            "--fetch-job-polling-interval=0.5",
        ],
        env,
        logs,
    )
    yield api
    worker.stop()
    api.stop()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS dashboard_test_marker")


@pytest.fixture(scope="module")
async def browser():
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser, stack):
    context = await browser.new_context(base_url=stack.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(30_000)
    yield await context.new_page()
    await context.close()


async def sign_in(page, token: str = ADMIN_TOKEN, operator: str = "ana") -> None:
    await page.fill("input[name=token]", token)
    await page.fill("input[name=operator]", operator)
    await page.click("button:has-text('Sign in')")


async def test_operator_retries_a_failed_job_and_watches_it_succeed(
    page, stack, pool, database_url, tmp_path
):
    job_id = await defer("dashboard_test.flaky", "dashboard", name="order-7")

    await page.goto("/admin/ui/failed")
    await expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    await sign_in(page)
    await expect(page).to_have_url(f"{stack.url}/admin/ui/failed")
    await expect(page.locator(".operator")).to_have_text("ana")
    cookie = next(c for c in await page.context.cookies() if c["name"] == session.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"

    # The worker fails the job; auto-refresh brings it onto the page.
    await page.click("text=Auto-refresh off")
    job_link = page.locator(f'a[href="/admin/ui/jobs/{job_id}"]').first
    await expect(job_link).to_be_visible(timeout=SLOW)
    await job_link.click()
    await expect(page).to_have_url(f"{stack.url}/admin/ui/jobs/{job_id}")
    await expect(page.locator("h1 .status")).to_have_text("failed")
    await expect(page.locator(".timeline")).to_contain_text("failed")
    await expect(page.locator("pre.json")).to_contain_text('"order-7"')

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dashboard_test_marker (name) VALUES ('order-7')")
    await page.click("button:has-text('Retry')")
    await expect(page.locator(".flash.ok")).to_have_text(f"Job {job_id}: retried.")
    await page.click("text=Auto-refresh off")
    await expect(page.locator("h1 .status")).to_have_text("succeeded", timeout=SLOW)
    await expect(page.locator(".timeline")).to_contain_text("retried")

    await page.goto("/admin/ui/audit")
    first = page.locator("tbody tr").first
    await expect(first).to_contain_text("ana")
    await expect(first).to_contain_text("job.retry")
    await expect(first).to_contain_text(f"job:{job_id}")

    await page.goto("/admin/")
    await expect(page.locator('[aria-label="Queue dashboard"]')).to_be_visible()
    shots = Path(os.environ.get("KIOSK_DASHBOARD_SCREENSHOTS") or tmp_path)
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(shots / "overview.png"), full_page=True)


async def test_wrong_token_shows_an_error_and_pages_need_a_sign_in(page, stack):
    for path in ("/admin/", "/admin/ui/jobs?status=failed", "/admin/ui/workers", "/admin/ui/audit"):
        await page.goto(path)
        await expect(page).to_have_url(re.compile(r"/admin/login\?next=%2Fadmin%2F"))
    await sign_in(page, token="not-the-token-0123456789")
    await expect(page.locator(".flash.error")).to_contain_text("not the admin token")
    assert not await page.context.cookies()
    await sign_in(page)
    await expect(page).to_have_url(f"{stack.url}/admin/ui/audit")  # back where they were going

    await page.click("button:text-is('Sign out')")
    await expect(page).to_have_url(f"{stack.url}/admin/login")
    await page.goto("/admin/ui/jobs")
    await expect(page).to_have_url(re.compile(r"/admin/login"))


async def test_a_form_without_its_csrf_token_is_refused(page, stack):
    await page.goto("/admin/login")
    await sign_in(page)
    await expect(page.locator("h1")).to_have_text("Overview")
    # Strip the token from the sign-out form, as a forged cross-site form would lack it.
    await page.locator("form[action='/admin/logout'] input[name=csrf_token]").evaluate(
        "input => input.remove()"
    )
    await page.click("button:text-is('Sign out')")
    await expect(page.locator(".flash.error")).to_contain_text("CSRF token missing or wrong")
    await page.goto("/admin/")
    await expect(page.locator("h1")).to_have_text(
        "Overview"
    )  # still signed in: the form did nothing


async def test_an_export_shows_its_progress_and_downloads(page, stack, database_url, tmp_path):
    # Its own worker: the stack's one does not outlive the table clean-ups between tests.
    worker = Worker(child_env(database_url), tmp_path, "--queues=exports")
    try:
        await _export_and_download(page, stack, database_url, tmp_path)
    finally:
        worker.stop()


async def _export_and_download(page, stack, database_url, tmp_path):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO orders (id, status, total_cents, customer_email, expires_at, created_at)
            SELECT gen_random_uuid(), 'paid', 100 * n, NULL, now(), now() - n * interval '1 minute'
            FROM generate_series(1, 30) AS n
            """
        )
    await page.goto("/admin/ui/exports")
    await sign_in(page)
    await expect(page).to_have_url(f"{stack.url}/admin/ui/exports")
    await page.click("button:has-text('Export orders')")
    await expect(page.locator(".flash.ok")).to_contain_text("Export started as job")
    await page.click("text=Auto-refresh off")
    download_link = page.locator("a:has-text('Download CSV')")
    await expect(download_link).to_be_visible(timeout=SLOW)
    row = page.locator("tbody tr").first
    await expect(row).to_contain_text("100%")
    await expect(row).to_contain_text("exported 30 orders")
    async with page.expect_download() as info:
        await download_link.click()
    download = await info.value
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("order_id,created_at,status") and len(lines) == 31


async def test_run_now_on_a_schedule_shows_a_successful_run(page, stack, database_url, tmp_path):
    target = Target()
    worker = Worker(child_env(database_url, **ALLOW_LOOPBACK), tmp_path)
    try:
        schedule = create(
            stack.url,
            name="partner-ping",
            cron="0 0 1 1 *",
            url=f"{target.url}/ping",
            headers={"X-Api-Key": "browser-s3cr3t"},
        )
        await page.goto("/admin/ui/schedules")
        await sign_in(page)
        row = page.locator("tbody tr", has_text="partner-ping")
        await expect(row).to_contain_text("never ran")
        await row.locator("button:has-text('Run now')").click()
        await expect(page.locator(".flash.ok")).to_contain_text("queued as job")
        await page.click("a:has-text('partner-ping')")
        await expect(page).to_have_url(f"{stack.url}/admin/ui/schedules/{schedule['id']}")
        await expect(page.locator("dl.fields")).to_contain_text("X-Api-Key: ********")
        await page.click("text=Auto-refresh off")
        run = page.locator("table.runs tbody tr").first
        await expect(run).to_contain_text("success", timeout=SLOW)
        await expect(run).to_contain_text("manual")
        await expect(run).to_contain_text("200")
        assert "browser-s3cr3t" not in await page.content()
        assert len(target.hits_for("/ping")) == 1
    finally:
        worker.stop()
        target.close()


async def test_operator_creates_a_device_copies_its_token_once_and_revokes_it(
    page, stack, database_url
):
    import httpx

    await page.goto("/admin/")
    await sign_in(page, operator="dora")
    await page.click("nav >> text=Devices")
    await expect(page).to_have_url(f"{stack.url}/admin/ui/devices")
    await page.fill("input[name=name]", "front door")
    await page.fill("input[name=terminal_ids]", "TERM_1, TERM_2")
    await page.click("button:has-text('Create device')")
    token = (await page.locator("#device-token").text_content()).strip()
    assert token.startswith("kdt_")
    orders = f"{stack.url}/orders/00000000-0000-0000-0000-000000000000"
    device = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(orders, headers=device)).status_code == 404
    row = page.locator("tbody tr", has_text="front door")
    await expect(row).to_contain_text("TERM_2")
    # Shown once: the list, opened again, never shows it.
    await page.goto("/admin/ui/devices")
    assert token not in await page.content()
    await row.locator("input[name=confirm]").check()
    await row.locator("button:has-text('Revoke')").click()
    await expect(page.locator(".flash.ok")).to_contain_text("front door revoked")
    await expect(row).to_contain_text("revoked")
    async with httpx.AsyncClient() as http:
        assert (await http.get(orders, headers=device)).status_code == 401
    with psycopg.connect(database_url) as conn:
        actions = conn.execute(
            "SELECT actor, action FROM admin_audit WHERE action LIKE 'device.%' ORDER BY id"
        ).fetchall()
    assert actions == [("dora", "device.create"), ("dora", "device.revoke")]


async def test_operator_pauses_limits_and_resumes_a_queue(page, stack, database_url, tmp_path):
    """The overview's queue card: pause with a reason, set limits, a refused limit, resume."""

    def control() -> tuple | None:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT paused, paused_reason, paused_by, max_per_second, max_running "
                "FROM kiosk_queue_controls WHERE queue = 'payments'"
            ).fetchone()

    await page.goto("/admin/")
    await sign_in(page)
    card = page.locator('article[aria-label="Queue payments"]')
    await expect(card).to_be_visible()
    await expect(card.locator(".limit-running")).to_have_text("no limit")

    await card.locator("input[name=reason]").fill("terminal firmware update")
    await card.locator("button:has-text('Pause')").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Queue payments paused")
    card = page.locator('article[aria-label="Queue payments"]')
    await expect(card.locator("h3 .status")).to_have_text("paused")
    await expect(card.locator(".reason")).to_have_text("terminal firmware update")
    await expect(card).to_contain_text("Paused by ana")
    assert control() == (True, "terminal firmware update", "ana", None, None)

    await card.locator("summary:has-text('Limits')").click()
    await card.locator("input[name=max_per_second]").fill("2.5")
    await card.locator("input[name=max_running]").fill("3")
    await card.locator("button:has-text('Save limits')").click()
    await expect(page.locator(".flash.ok")).to_contain_text("at most 2.5 starts per second")
    card = page.locator('article[aria-label="Queue payments"]')
    await expect(card.locator(".limit-rate")).to_have_text("2.5")
    await expect(card.locator(".limit-running")).to_have_text("3")
    shots = os.environ.get("KIOSK_DASHBOARD_SCREENSHOTS") or str(tmp_path)
    await card.screenshot(path=os.path.join(shots, "queue-paused.png"))

    # Out of range: a message, nothing changed.
    await card.locator("summary:has-text('Limits')").click()
    await card.locator("input[name=max_running]").fill("0")
    await card.locator("button:has-text('Save limits')").click()
    await expect(page.locator(".flash.error")).to_contain_text("between 1 and 10000")
    assert control() == (True, "terminal firmware update", "ana", 2.5, 3)

    await page.locator('article[aria-label="Queue payments"] button:has-text("Resume")').click()
    await expect(page.locator(".flash.ok")).to_contain_text("Queue payments resumed")
    card = page.locator('article[aria-label="Queue payments"]')
    await expect(card.locator("h3 .status")).to_have_count(0)
    await expect(card.locator("button:has-text('Pause')")).to_be_visible()
    assert control() == (False, None, None, 2.5, 3)
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT actor, action FROM admin_audit WHERE target = 'queue:payments' ORDER BY id"
        ).fetchall()
    assert audited == [("ana", "queue.pause"), ("ana", "queue.limits"), ("ana", "queue.resume")]
