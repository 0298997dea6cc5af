"""Schedules end to end: the admin API in uvicorn, real procrastinate workers, a real HTTP target.

One API process serves the module (it keeps no state between tests); workers start per test,
since each test begins from empty tables, procrastinate's included. The dispatcher runs every
2 s here (KIOSK_SCHEDULES_DISPATCH_EVERY) so a test sees runs it created, not only the ones the
API created ahead when the schedule was stored.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import Api, Worker, child_env, free_port, wait_for
from tests.support.schedules import (
    ALLOW_LOOPBACK,
    AUTH,
    FAST,
    count,
    create,
    db_runs,
    run_row,
    runs,
)

SECRET = "s3cr3t-api-key-value"


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = child_env(database_url, **ALLOW_LOOPBACK, **FAST)
    server = Api(env, tmp_path_factory.mktemp("schedules-api"))
    yield server
    server.stop()


@pytest.fixture
def workers(database_url: str, tmp_path) -> Iterator[Callable[..., list[Worker]]]:
    started: list[Worker] = []

    def start(n: int = 1, *, allow_loopback: bool = True, **extra: str) -> list[Worker]:
        env = child_env(database_url, **FAST, **(ALLOW_LOOPBACK if allow_loopback else {}), **extra)
        new = [Worker(env, tmp_path, name=f"worker-{len(started) + i}") for i in range(n)]
        started.extend(new)
        return new

    yield start
    for worker in started:
        worker.stop()


def finished(database_url: str, run_id: int) -> dict | None:
    run = run_row(database_url, run_id)
    return run if run and run["finished_at"] else None


def run_now(api: Api, schedule_id: int) -> dict:
    response = httpx.post(f"{api.url}/admin/schedules/{schedule_id}/run", headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def patch(api: Api, schedule_id: int, **fields: object) -> httpx.Response:
    return httpx.patch(
        f"{api.url}/admin/schedules/{schedule_id}", json=fields, headers=AUTH, timeout=30
    )


YEARLY = "0 0 1 1 *"  # never fires during a test: runs come from "run now"


def test_admin_token_is_required(api):
    calls = [
        ("GET", ""),
        ("POST", ""),
        ("GET", "/1"),
        ("PATCH", "/1"),
        ("DELETE", "/1"),
        ("POST", "/1/run"),
        ("GET", "/1/runs"),
    ]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            response = httpx.request(
                method, f"{api.url}/admin/schedules{path}", headers=headers, json={}
            )
            assert response.status_code == 401, (method, path, response.text)
            assert "admin token required" in response.json()["detail"]


def test_invalid_schedules_are_refused_and_nothing_is_stored(api, target, database_url):
    good = {"name": "bad", "cron": "* * * * *", "url": f"{target.url}/never"}
    cases = [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"timezone": "Nowhere/Land"}, "unknown time zone"),
        ({"method": "BREW"}, "method 'BREW'"),
        ({"url": "ftp://127.0.0.1/file"}, "only http"),
        ({"url": "http://[::1]/admin"}, "internal address"),  # loopback, not allow-listed
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "internal address"),
        ({"url": "http://no-such-host.invalid/"}, "cannot resolve"),
        ({"headers": {"Connection": "keep-alive"}}, "per connection"),
        ({"headers": {"X-Ok": "line\nbreak"}}, "invalid value"),
        ({"timeout_seconds": 500}, "timeout_seconds"),
        ({"max_attempts": 50}, "max_attempts"),
        ({"body": "x" * 70_000}, "body is larger"),
    ]
    for change, reason in cases:
        response = httpx.post(
            f"{api.url}/admin/schedules", json=good | change, headers=AUTH, timeout=30
        )
        assert response.status_code == 422, (change, response.text)
        assert reason in response.json()["detail"], (change, response.text)
    # Shape errors are 422 too (FastAPI's own detail): unknown field, wrong type.
    for change in ({"crontab": "* * * * *"}, {"max_attempts": "many"}):
        assert (
            httpx.post(f"{api.url}/admin/schedules", json=good | change, headers=AUTH).status_code
            == 422
        )

    schedule = create(api.url, **good | {"cron": YEARLY})
    response = patch(api, schedule["id"], url="http://10.1.2.3/", cron="* * * * * *")
    assert response.status_code == 422 and "internal address" in response.json()["detail"]
    assert patch(api, schedule["id"], cron=None).status_code == 422
    assert (
        httpx.get(f"{api.url}/admin/schedules/{schedule['id']}", headers=AUTH).json()["cron"]
        == YEARLY
    )
    assert [
        s["id"] for s in httpx.get(f"{api.url}/admin/schedules", headers=AUTH).json()["schedules"]
    ] == [schedule["id"]]
    assert count(database_url, "SELECT count(*) FROM schedule_runs") == 0
    assert count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 0
    assert target.hits_for("/never") == []


def test_seconds_cron_runs_on_each_tick_once_with_three_workers(api, target, database_url, workers):
    started = workers(3, PROCRASTINATE_LOG_LEVEL="debug")
    schedule = create(
        api.url,
        name="every-second",
        cron="* * * * * *",
        url=f"{target.url}/tick?key=public",
        method="POST",
        body='{"sync": true}',
        headers={"X-Api-Key": SECRET, "Content-Type": "application/json"},
    )
    assert schedule["headers"] == {"X-Api-Key": "********", "Content-Type": "application/json"}
    nexts = [dt.datetime.fromisoformat(t) for t in schedule["next_runs"]]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(nexts)] == [1.0] * 4
    created = dt.datetime.fromisoformat(schedule["created_at"])

    # Past the 7 s the API dispatched ahead: these runs come from the workers' dispatcher.
    def past_the_api_horizon() -> bool:
        return any(
            r["outcome"] == "success" and (r["scheduled_for"] - created).total_seconds() > 9
            for r in db_runs(database_url, schedule["id"])
        )

    wait_for(past_the_api_horizon, timeout=60, what="runs created by the dispatcher")
    assert patch(api, schedule["id"], active=False).status_code == 200
    wait_for(
        lambda: all(r["finished_at"] for r in db_runs(database_url, schedule["id"])),
        timeout=30,
        what="runs in flight to finish",
    )

    rows = db_runs(database_url, schedule["id"])
    ticks = [r["scheduled_for"] for r in rows]
    assert len(rows) >= 9 and len(set(ticks)) == len(ticks)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)] == [1.0] * (
        len(ticks) - 1
    )
    assert all(
        r["trigger"] == "cron" and r["outcome"] == "success" and r["attempts"] == 1 for r in rows
    )
    late = [(r["started_at"] - r["scheduled_for"]).total_seconds() for r in rows]
    assert min(late) >= 0 and max(late) < 3, late
    # One request per run, each with the real secret and body.
    hits = target.hits_for("/tick")
    assert sorted(int(h.headers["X-Kiosk-Run"]) for h in hits) == sorted(r["id"] for r in rows)
    assert {h.headers["X-Api-Key"] for h in hits} == {SECRET} and {h.body for h in hits} == {
        b'{"sync": true}'
    }
    assert {h.method for h in hits} == {"POST"}
    # Secrets never reach a log, even at debug level.
    for process in [*started, api]:
        assert SECRET not in process.output(), process.name
        assert "key=public" not in process.output(), process.name  # nor the URL's query
    assert "schedules.execute_run" in "".join(w.output() for w in started)


def test_run_now_creates_a_manual_run_and_history_is_newest_first(
    api, target, database_url, workers
):
    workers(1)
    schedule = create(api.url, name="history", cron="* * * * * *", url=f"{target.url}/history")
    wait_for(
        lambda: any(r["outcome"] == "success" for r in db_runs(database_url, schedule["id"])),
        timeout=30,
        what="a cron run",
    )
    answer = run_now(api, schedule["id"])
    manual = answer["run"]
    assert manual["trigger"] == "manual" and manual["job_id"] and len(answer["next_runs"]) == 5
    wait_for(lambda: finished(database_url, manual["id"]), timeout=30, what="the manual run")
    assert patch(api, schedule["id"], active=False).status_code == 200
    wait_for(
        lambda: all(r["finished_at"] for r in db_runs(database_url, schedule["id"])),
        timeout=30,
        what="runs in flight to finish",
    )

    history = runs(api.url, schedule["id"], limit=200)
    assert history["next_cursor"] is None and history["next_runs"] == []
    listed = history["runs"]
    keys = [(r["scheduled_for"], r["id"]) for r in listed]
    assert keys == sorted(keys, reverse=True)
    assert {r["trigger"] for r in listed} == {"cron", "manual"}
    ran_manual = next(r for r in listed if r["id"] == manual["id"])
    assert ran_manual["outcome"] == "success" and ran_manual["http_status"] == 200
    assert ran_manual["response_excerpt"] == "ok /history"
    older = [r for r in listed if r["scheduled_for"] < ran_manual["scheduled_for"]]
    assert older and listed.index(ran_manual) < listed.index(older[0])

    paged, cursor = [], None
    while True:
        page = runs(api.url, schedule["id"], limit=2, **({"cursor": cursor} if cursor else {}))
        paged += page["runs"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [r["id"] for r in paged] == [r["id"] for r in listed]
    assert (
        httpx.get(
            f"{api.url}/admin/schedules/{schedule['id']}/runs",
            params={"cursor": "nope"},
            headers=AUTH,
        ).status_code
        == 422
    )

    listed_schedule = httpx.get(f"{api.url}/admin/schedules", headers=AUTH).json()["schedules"][0]
    assert listed_schedule["last_run"]["id"] == listed[0]["id"]


def test_500_twice_then_200_is_retried_to_success(api, target, database_url, workers):
    workers(1)
    schedule = create(
        api.url, name="flaky", cron=YEARLY, url=f"{target.url}/flaky/a", max_attempts=3
    )
    manual = run_now(api, schedule["id"])["run"]
    run = wait_for(lambda: finished(database_url, manual["id"]), timeout=60, what="the retried run")
    assert run["outcome"] == "success" and run["attempts"] == 3 and run["http_status"] == 200
    assert [(a["attempt"], a["outcome"], a["http_status"]) for a in run["attempt_log"]] == [
        (1, "retrying", 500),
        (2, "retrying", 500),
        (3, "success", 200),
    ]
    hits = target.hits_for("/flaky/a")
    assert len(hits) == 3 and {h.headers["X-Kiosk-Run"] for h in hits} == {str(manual["id"])}
    # procrastinate retried the same job; it ends succeeded.
    assert (
        count(
            database_url,
            "SELECT count(*) FROM procrastinate_jobs WHERE id = %s AND status = 'succeeded'"
            " AND attempts = 3",
            manual["job_id"],
        )
        == 1
    )


def test_outcomes_timeout_unreachable_client_error_and_redirects(
    api, target, database_url, workers
):
    workers(1)
    closed = f"http://127.0.0.1:{free_port()}/"
    cases = {
        "hang": {"url": f"{target.url}/hang", "timeout_seconds": 1, "max_attempts": 1},
        "unreachable": {"url": closed, "max_attempts": 2},
        "not-found": {"url": f"{target.url}/status/404", "max_attempts": 3},
        "same-origin-redirect": {"url": f"{target.url}/redirect/same"},
        "other-origin-redirect": {"url": f"{target.url}/redirect/other", "max_attempts": 3},
        "big": {"url": f"{target.url}/big"},
    }
    run_ids = {}
    for name, fields in cases.items():
        schedule = create(api.url, name=name, cron=YEARLY, **fields)
        run_ids[name] = run_now(api, schedule["id"])["run"]["id"]
    done = {
        name: wait_for(lambda i=i: finished(database_url, i), timeout=120, what=name)
        for name, i in run_ids.items()
    }

    hang = done["hang"]
    assert hang["outcome"] == "timeout" and "within 1s" in hang["error"] and hang["attempts"] == 1
    assert 900 <= hang["duration_ms"] < 5000
    unreachable = done["unreachable"]
    assert unreachable["outcome"] == "error" and unreachable["attempts"] == 2
    assert "ConnectError" in unreachable["error"] and unreachable["http_status"] is None
    not_found = done["not-found"]
    assert (not_found["outcome"], not_found["http_status"], not_found["attempts"]) == (
        "failed",
        404,
        1,
    )
    same = done["same-origin-redirect"]
    assert (same["outcome"], same["http_status"], same["response_excerpt"]) == (
        "success",
        200,
        "ok /ok?from=redirect",
    )
    other = done["other-origin-redirect"]
    assert (other["outcome"], other["http_status"], other["attempts"]) == ("failed", 302, 1)
    assert "another origin" in other["error"] and target.hits_for("/ok") == [
        h for h in target.hits_for("/ok") if "from=redirect" in h.path
    ]
    big = done["big"]
    assert big["outcome"] == "success" and big["response_excerpt"].startswith("x" * 1000)
    assert len(big["response_excerpt"]) < 1200 and "not read further" in big["response_excerpt"]
    # A run that did not succeed fails its job, so job views list it.
    failed_jobs = count(
        database_url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'"
    )
    assert failed_jobs == 4


def test_loopback_target_is_refused_at_execution_without_allow_listing(
    api, target, database_url, workers
):
    workers(1, allow_loopback=False)  # the API allowed it when stored; this worker does not
    schedule = create(
        api.url, name="guarded", cron=YEARLY, url=f"{target.url}/guarded", max_attempts=3
    )
    manual = run_now(api, schedule["id"])["run"]
    run = wait_for(lambda: finished(database_url, manual["id"]), timeout=30, what="the refused run")
    assert run["outcome"] == "refused" and run["attempts"] == 1
    assert "internal address" in run["error"] and "KIOSK_OUTBOUND_ALLOW_HOSTS" in run["error"]
    assert target.hits_for("/guarded") == []


def test_deactivating_stops_new_runs_and_activating_resumes(api, target, database_url, workers):
    workers(1)
    schedule = create(api.url, name="pausable", cron="* * * * * *", url=f"{target.url}/pausable")
    wait_for(
        lambda: (
            len([r for r in db_runs(database_url, schedule["id"]) if r["outcome"] == "success"])
            >= 2
        ),
        timeout=30,
        what="two runs",
    )
    paused = patch(api, schedule["id"], active=False).json()
    assert paused["active"] is False and paused["next_runs"] == []
    wait_for(
        lambda: all(r["finished_at"] for r in db_runs(database_url, schedule["id"])),
        timeout=30,
        what="runs in flight to finish",
    )
    before = db_runs(database_url, schedule["id"])
    hits = len(target.hits_for("/pausable"))
    assert (
        count(
            database_url,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
            "AND task_name = 'schedules.execute_run'",
        )
        == 0
    )
    # A non-event: give two dispatcher rounds (every 2 s) and the ticks a chance to happen.
    newest = count(database_url, "SELECT coalesce(max(id), 0) FROM procrastinate_jobs")
    wait_for(
        lambda: (
            count(
                database_url,
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'schedules.dispatch' "
                "AND status = 'succeeded' AND id > %s",
                newest,
            )
            >= 2
        ),
        timeout=30,
        what="two dispatcher rounds deferred after the pause",
    )
    assert db_runs(database_url, schedule["id"]) == before
    assert len(target.hits_for("/pausable")) == hits

    resumed = patch(api, schedule["id"], active=True).json()
    assert len(resumed["next_runs"]) == 5
    since = dt.datetime.fromisoformat(resumed["updated_at"])
    wait_for(
        lambda: any(
            r["outcome"] == "success" and r["scheduled_for"] > since
            for r in db_runs(database_url, schedule["id"])
        ),
        timeout=30,
        what="a run after resuming",
    )
    ticks = [r["scheduled_for"] for r in db_runs(database_url, schedule["id"])]
    assert not [t for t in ticks if before[-1]["scheduled_for"] < t <= since]  # nothing caught up


def test_deleting_removes_the_schedule_and_its_history(api, target, database_url, workers):
    workers(1)
    schedule = create(api.url, name="doomed", cron="* * * * * *", url=f"{target.url}/doomed")
    manual = run_now(api, schedule["id"])["run"]
    wait_for(lambda: finished(database_url, manual["id"]), timeout=30, what="the manual run")
    base = f"{api.url}/admin/schedules/{schedule['id']}"
    assert httpx.delete(base, headers=AUTH).status_code == 204
    for method, path in [
        ("GET", ""),
        ("GET", "/runs"),
        ("PATCH", ""),
        ("POST", "/run"),
        ("DELETE", ""),
    ]:
        response = httpx.request(method, base + path, headers=AUTH, json={})
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"] == f"schedule {schedule['id']} not found"
    assert count(database_url, "SELECT count(*) FROM schedule_runs") == 0
    assert (
        count(
            database_url,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
            " AND task_name = 'schedules.execute_run'",
        )
        == 0
    )
