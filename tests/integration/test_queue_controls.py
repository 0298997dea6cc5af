"""Queue controls, the operators' side: the admin API (pause, resume, limits, listing), its checks
and audit entries, and the defaults from KIOSK_QUEUE_LIMITS. Against a real uvicorn and database;
enforcement by workers is tested with the fetch (docs/workers.md, "How controls are enforced")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from kiosk import db, queue
from kiosk.queues import names
from tests.support import Api, child_env, wait_for
from tests.support.config import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Kiosk-Actor": "ana"}


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One API for the module (each test still starts from empty tables: tests/support)."""
    server = Api(child_env(database_url), tmp_path_factory.mktemp("api"))
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        yield client
    server.stop()


def queues(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get("/admin/queues")
    assert response.status_code == 200, response.text
    return {q["name"]: q for q in response.json()}


def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchall()


def audit(api: httpx.Client) -> list[tuple[str, str, str, dict[str, Any]]]:
    entries = api.get("/admin/audit").json()["entries"]
    return [(e["actor"], e["action"], e["target"], e["details"]) for e in reversed(entries)]


def test_every_route_needs_the_admin_token(api: httpx.Client, database_url: str) -> None:
    for method, path, body in (
        ("GET", "/admin/queues", None),
        ("POST", "/admin/queues/payments/pause", {"reason": "x"}),
        ("POST", "/admin/queues/payments/resume", None),
        ("PUT", "/admin/queues/payments/limits", {"max_per_second": 1, "max_running": 1}),
    ):
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"}):
            response = api.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (method, path, response.text)
    assert rows(database_url, "SELECT * FROM kiosk_queue_controls") == []


def test_the_kiosk_queues_are_listed_before_any_job_exists(api: httpx.Client) -> None:
    listed = queues(api)
    assert set(names.KNOWN) <= set(listed)
    payments = listed["payments"]
    assert payments["paused"] is False and payments["paused_reason"] is None
    assert payments["max_per_second"] is None and payments["max_running"] is None
    assert payments["counts"]["todo"] == 0 and payments["oldest_runnable_age_seconds"] is None


async def test_listing_joins_controls_and_jobs(api: httpx.Client, pool: object) -> None:
    async with db.transaction() as conn:
        for n in range(3):
            await queue.defer(conn, "demo.job", queue="mail", n=n)
    async with httpx.AsyncClient(base_url=api.base_url, headers=AUTH) as client:
        paused = await client.post("/admin/queues/mail/pause", json={"reason": "SMTP relay down"})
        assert paused.status_code == 200
        mail = {q["name"]: q for q in (await client.get("/admin/queues")).json()}["mail"]
    assert mail["counts"]["todo"] == 3 and mail["counts"]["doing"] == 0
    assert mail["oldest_runnable_age_seconds"] >= 0
    assert mail["paused"] is True and mail["paused_reason"] == "SMTP relay down"


def test_pause_and_resume_a_queue_that_has_no_job_yet(api: httpx.Client, database_url: str) -> None:
    paused = api.post("/admin/queues/brand-new.q_1/pause", json={"reason": "  not yet  "})
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["name"] == "brand-new.q_1" and body["paused"] is True
    assert body["paused_reason"] == "not yet" and body["paused_by"] == "ana"
    assert body["paused_at"] is not None
    assert queues(api)["brand-new.q_1"]["paused"] is True

    # Pausing again takes the new reason and keeps when the pause began.
    again = api.post("/admin/queues/brand-new.q_1/pause", json={"reason": "still not"}).json()
    assert again["paused_reason"] == "still not" and again["paused_at"] == body["paused_at"]
    # No body, or an empty one: no reason.
    assert api.post("/admin/queues/other/pause").json()["paused_reason"] is None
    assert api.post("/admin/queues/third/pause", json={}).json()["paused"] is True

    resumed = api.post("/admin/queues/brand-new.q_1/resume")
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False and resumed.json()["paused_reason"] is None
    # Resuming a queue that is not paused (or has no row at all) is harmless.
    assert api.post("/admin/queues/brand-new.q_1/resume").json()["paused"] is False
    never = api.post("/admin/queues/never-paused/resume")
    assert never.status_code == 200 and never.json()["paused"] is False
    assert (
        rows(database_url, "SELECT 1 FROM kiosk_queue_controls WHERE queue = 'never-paused'") == []
    )

    assert audit(api) == [
        ("ana", "queue.pause", "queue:brand-new.q_1", {"reason": "not yet"}),
        ("ana", "queue.pause", "queue:brand-new.q_1", {"reason": "still not"}),
        ("ana", "queue.pause", "queue:other", {"reason": None}),
        ("ana", "queue.pause", "queue:third", {"reason": None}),
        ("ana", "queue.resume", "queue:brand-new.q_1", {"was_paused": True}),
        ("ana", "queue.resume", "queue:brand-new.q_1", {"was_paused": False}),
        ("ana", "queue.resume", "queue:never-paused", {"was_paused": False}),
    ]
    ((changes,),) = rows(
        database_url, "SELECT changes FROM kiosk_queue_controls WHERE queue = 'brand-new.q_1'"
    )
    assert changes == 3  # two pauses and the one resume that changed something


def test_limits_are_set_replaced_and_cleared(api: httpx.Client) -> None:
    put = api.put("/admin/queues/payments/limits", json={"max_per_second": 2.5, "max_running": 3})
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["max_per_second"], body["max_running"], body["limits_set_by"]) == (2.5, 3, "ana")
    assert body["paused"] is False
    listed = queues(api)["payments"]
    assert (listed["max_per_second"], listed["max_running"]) == (2.5, 3)

    # An integer rate is a number too; null clears a limit.
    only_rate = api.put(
        "/admin/queues/payments/limits", json={"max_per_second": 20, "max_running": None}
    )
    assert (only_rate.json()["max_per_second"], only_rate.json()["max_running"]) == (20, None)
    cleared = api.put(
        "/admin/queues/payments/limits", json={"max_per_second": None, "max_running": None}
    )
    assert (cleared.json()["max_per_second"], cleared.json()["max_running"]) == (None, None)
    edges = api.put(
        "/admin/queues/payments/limits", json={"max_per_second": 10000, "max_running": 1}
    )
    assert edges.status_code == 200
    # Limits and pause are independent.
    api.post("/admin/queues/payments/pause", json={"reason": "provider incident"})
    paused = queues(api)["payments"]
    assert paused["paused"] is True and paused["max_running"] == 1

    limits = [entry for entry in audit(api) if entry[1] == "queue.limits"]
    assert limits[0] == (
        "ana",
        "queue.limits",
        "queue:payments",
        {
            "max_per_second": 2.5,
            "max_running": 3,
            "before": {"max_per_second": None, "max_running": None},
        },
    )
    assert limits[-1][3]["before"] == {"max_per_second": None, "max_running": None}
    assert len(limits) == 4


BAD_REQUESTS = [
    ("POST", "/admin/queues/bad%20queue/pause", None, "is not a queue name"),
    ("POST", f"/admin/queues/{'q' * 65}/pause", None, "is not a queue name"),
    ("POST", "/admin/queues/caf%C3%A9/resume", None, "is not a queue name"),
    (
        "PUT",
        "/admin/queues/a%3Bb/limits",
        {"max_per_second": 1, "max_running": 1},
        "is not a queue name",
    ),
    ("POST", "/admin/queues/payments/pause", {"reason": "x" * 201}, "at most 200 characters"),
    ("POST", "/admin/queues/payments/pause", {"reason": "line\nbreak"}, "control characters"),
    ("POST", "/admin/queues/payments/pause", {"reason": 5}, None),
    ("POST", "/admin/queues/payments/pause", {"why": "typo"}, None),
    ("PUT", "/admin/queues/payments/limits", {"max_per_second": 0, "max_running": None}, "above 0"),
    (
        "PUT",
        "/admin/queues/payments/limits",
        {"max_per_second": -1, "max_running": None},
        "above 0",
    ),
    (
        "PUT",
        "/admin/queues/payments/limits",
        {"max_per_second": 10000.5, "max_running": None},
        "at most 10000",
    ),
    (
        "PUT",
        "/admin/queues/payments/limits",
        {"max_per_second": None, "max_running": 0},
        "between 1 and 10000",
    ),
    (
        "PUT",
        "/admin/queues/payments/limits",
        {"max_per_second": None, "max_running": 10001},
        "between 1 and 10000",
    ),
    ("PUT", "/admin/queues/payments/limits", {"max_per_second": "5", "max_running": None}, None),
    ("PUT", "/admin/queues/payments/limits", {"max_per_second": True, "max_running": None}, None),
    ("PUT", "/admin/queues/payments/limits", {"max_per_second": None, "max_running": 1.5}, None),
    ("PUT", "/admin/queues/payments/limits", {"max_per_second": None, "max_running": "2"}, None),
    ("PUT", "/admin/queues/payments/limits", {"max_running": 2}, None),  # both keys are required
    (
        "PUT",
        "/admin/queues/payments/limits",
        {"max_per_second": 1, "max_running": 1, "burst": 3},
        None,
    ),
    ("PUT", "/admin/queues/payments/limits", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "detail"), BAD_REQUESTS)
def test_bad_input_is_422_with_a_detail_and_changes_nothing(
    api: httpx.Client,
    database_url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    detail: str | None,
) -> None:
    response = api.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    if detail is not None:
        assert detail in response.json()["detail"]
    assert rows(database_url, "SELECT * FROM kiosk_queue_controls") == []
    assert rows(database_url, "SELECT * FROM admin_audit") == []


def test_non_finite_rates_are_refused(api: httpx.Client, database_url: str) -> None:
    # Python's JSON parser takes NaN and Infinity: the range check must refuse them.
    for raw in ("NaN", "Infinity", "-Infinity"):
        response = api.put(
            "/admin/queues/payments/limits",
            content=f'{{"max_per_second": {raw}, "max_running": null}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, (raw, response.text)
    assert rows(database_url, "SELECT * FROM kiosk_queue_controls") == []


# --- defaults from KIOSK_QUEUE_LIMITS ---------------------------------------------------------


def start_api(database_url: str, log_dir: Path, limits: str) -> Api:
    return Api(child_env(database_url, KIOSK_QUEUE_LIMITS=limits), log_dir)


def limits_of(url: str) -> dict[str, tuple[Any, Any, Any]]:
    listed = httpx.get(f"{url}/admin/queues", headers=AUTH, timeout=30).json()
    return {q["name"]: (q["max_per_second"], q["max_running"], q["limits_set_by"]) for q in listed}


def test_settings_defaults_apply_at_start_and_never_overwrite_an_operator(
    database_url: str, log_dir: Path
) -> None:
    settings = "settings:KIOSK_QUEUE_LIMITS"
    first = start_api(
        database_url, log_dir, "payments:max_per_second=20,max_running=5;exports:max_running=1"
    )
    try:
        wait_for(
            lambda: limits_of(first.url)["exports"] == (None, 1, settings),
            timeout=30,
            what="the defaults applied",
        )
        assert limits_of(first.url)["payments"] == (20, 5, settings)
        # An operator changes payments at run time.
        httpx.put(
            f"{first.url}/admin/queues/payments/limits",
            headers=AUTH,
            json={"max_per_second": 3, "max_running": None},
        ).raise_for_status()
    finally:
        first.stop()

    # A deploy with other defaults: payments keeps the operator's value, exports follows the
    # settings, schedules gets its new default, and a queue dropped from them loses its limits.
    second = start_api(
        database_url,
        log_dir,
        "payments:max_per_second=50;schedules:max_running=2;notifications:max_per_second=9",
    )
    try:
        wait_for(
            lambda: limits_of(second.url)["schedules"] == (None, 2, settings),
            timeout=30,
            what="the new defaults applied",
        )
        now = limits_of(second.url)
        assert now["payments"] == (3, None, "ana")
        assert now["exports"] == (None, None, None)
        assert now["notifications"] == (9, None, settings)
    finally:
        second.stop()

    # Starting again with the same defaults changes nothing (and audits nothing).
    before = rows(database_url, "SELECT count(*) FROM admin_audit")
    third = start_api(
        database_url,
        log_dir,
        "payments:max_per_second=50;schedules:max_running=2;notifications:max_per_second=9",
    )
    try:
        wait_for(lambda: "schedules" in limits_of(third.url), timeout=30, what="the API")
    finally:
        third.stop()
    assert rows(database_url, "SELECT count(*) FROM admin_audit") == before
    entries = rows(
        database_url,
        "SELECT actor, target, details->>'max_running' FROM admin_audit "
        "WHERE action = 'queue.limits' ORDER BY id",
    )
    assert entries == [
        (settings, "queue:exports", "1"),
        (settings, "queue:payments", "5"),
        ("ana", "queue:payments", None),
        (settings, "queue:notifications", None),
        (settings, "queue:schedules", "2"),
        (settings, "queue:exports", None),
    ]


def test_metrics_show_pause_state_limits_and_changes(api: httpx.Client) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, str], float]:
        text = api.get("/metrics").text
        return {
            (sample.name, sample.labels.get("queue", "")): sample.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith(
                ("kiosk_queue_paused", "kiosk_queue_max", "kiosk_queue_control")
            )
            for sample in family.samples
        }

    before = scrape()
    assert before[("kiosk_queue_paused", "payments")] == 0
    assert before[("kiosk_queue_control_changes_total", "payments")] == 0
    assert ("kiosk_queue_max_running", "payments") not in before  # absent: no limit

    api.post("/admin/queues/payments/pause", json={"reason": "incident"})
    api.put("/admin/queues/payments/limits", json={"max_per_second": 7.5, "max_running": 2})
    api.post("/admin/queues/not-yet-used/pause")
    after = scrape()
    assert after[("kiosk_queue_paused", "payments")] == 1
    assert after[("kiosk_queue_paused", "exports")] == 0
    assert after[("kiosk_queue_paused", "not-yet-used")] == 1
    assert after[("kiosk_queue_max_per_second", "payments")] == 7.5
    assert after[("kiosk_queue_max_running", "payments")] == 2
    assert after[("kiosk_queue_control_changes_total", "payments")] == 2
    assert after[("kiosk_queue_control_changes_total", "not-yet-used")] == 1


def test_dashboard_forms_need_a_session_and_their_csrf_token(
    api: httpx.Client, database_url: str
) -> None:
    from tests.support.dashboard import csrf_of, sign_in

    anonymous = httpx.post(f"{api.base_url}/admin/ui/queues/payments/pause", data={"reason": "x"})
    assert anonymous.status_code == 303 and "/admin/login" in anonymous.headers["location"]
    browser = sign_in(str(api.base_url), operator="bo")
    try:
        forged = browser.post("/admin/ui/queues/payments/pause", data={"reason": "x"})
        assert forged.status_code == 403
        assert rows(database_url, "SELECT * FROM kiosk_queue_controls") == []

        token = csrf_of(browser)
        form = {"csrf_token": token, "next": "/admin/"}
        paused = browser.post("/admin/ui/queues/payments/pause", data={**form, "reason": "why"})
        assert paused.status_code == 303 and paused.headers["location"] == "/admin/"
        refused = browser.post(
            "/admin/ui/queues/payments/limits",
            data={**form, "max_per_second": "0", "max_running": ""},
        )
        assert refused.status_code == 303
        page = browser.get("/admin/")  # the message comes with the next page
        assert "must be above 0" in page.text and "Paused by bo" in page.text
        unknown = browser.post("/admin/ui/queues/payments/explode", data=form)
        assert unknown.status_code == 404
    finally:
        browser.close()
    assert rows(
        database_url,
        "SELECT paused, paused_reason, paused_by, max_per_second FROM kiosk_queue_controls",
    ) == [(True, "why", "bo", None)]
