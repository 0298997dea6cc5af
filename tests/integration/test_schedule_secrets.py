"""Schedule secrets at rest: encrypted in the table, never in an answer, a page or a log.

The attacks of issue 14: secrets readable in the `schedules` table; masking by header name only
(`X-Bearer`, `X-Client-Code` shown in full); query strings and bodies returned in full; a PATCH
that moves the URL to another host while sending the masks back, so the next run hands the stored
secrets to that host. Plus the key's life: the migration that encrypts existing rows, a kiosk
without a key, key rotation, and GET /admin/schedules pages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet

from kiosk import migrations, secretbox
from kiosk.settings import get_settings
from tests.support import PROJECT_DIR, Api, Worker, child_env, wait_for
from tests.support.config import SECRET_KEY
from tests.support.dashboard import sign_in
from tests.support.schedules import ALLOW_LOOPBACK, AUTH, FAST, Target, count, create, run_row, runs

MASK = "********"
YEARLY = "0 0 1 1 *"  # never fires during a test: runs come from "run now"
SECRETS = {
    "authorization": "Bearer tok-AAAA1111",
    "bearer": "xb-BBBB2222",
    "client_code": "cc-CCCC3333",
    "query": "qk-DDDD4444",
    "body": "bd-EEEE5555",
}


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = child_env(database_url, **ALLOW_LOOPBACK, **FAST, KIOSK_LOG_LEVEL="DEBUG")
    server = Api(env, tmp_path_factory.mktemp("secrets-api"))
    yield server
    server.stop()


@pytest.fixture
def workers(database_url: str, tmp_path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**extra: str) -> Worker:
        env = (
            child_env(
                database_url,
                **FAST,
                **ALLOW_LOOPBACK,
                PROCRASTINATE_LOG_LEVEL="debug",
                KIOSK_LOG_LEVEL="DEBUG",
            )
            | extra
        )
        worker = Worker(env, tmp_path, name=f"worker-{len(started)}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def run_now(api: Api, schedule_id: int) -> dict:
    response = httpx.post(f"{api.url}/admin/schedules/{schedule_id}/run", headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["run"]


def finished(database_url: str, run_id: int) -> dict | None:
    run = run_row(database_url, run_id)
    return run if run and run["finished_at"] else None


def patch(api: Api, schedule_id: int, **fields: object) -> httpx.Response:
    return httpx.patch(
        f"{api.url}/admin/schedules/{schedule_id}", json=fields, headers=AUTH, timeout=30
    )


def get(api: Api, schedule_id: int) -> dict:
    response = httpx.get(f"{api.url}/admin/schedules/{schedule_id}", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def every_table(database_url: str) -> str:
    """Every row of every table of the database, as text."""
    with psycopg.connect(database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        return "\n".join(
            conn.execute(
                f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {table} t"
            ).fetchone()[0]
            for table in tables
        )


def leaked(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def full_request(target: Target) -> dict:
    return {
        "name": "partner-sync",
        "cron": YEARLY,
        "method": "POST",
        "url": f"{target.url}/echo?api_key={SECRETS['query']}&page=2",
        "headers": {
            "Authorization": SECRETS["authorization"],
            "X-Bearer": SECRETS["bearer"],
            "X-Client-Code": SECRETS["client_code"],
            "Accept": "application/json",
            "X-Source": "kiosk-test",
        },
        "plain_headers": ["X-Source"],
        "body": json.dumps({"password": SECRETS["body"]}),
    }


def test_secrets_never_reach_a_table_a_log_or_an_answer(api, target, database_url, workers):
    worker = workers()
    schedule = create(api.url, **full_request(target))
    assert schedule["headers"] == {
        "Authorization": MASK,
        "X-Bearer": MASK,
        "X-Client-Code": MASK,
        "Accept": "application/json",
        "X-Source": "kiosk-test",
    }
    assert schedule["url"] == f"{target.url}/echo?api_key={MASK}&page={MASK}"
    assert schedule["body"] == MASK and schedule["body_bytes"] == len(full_request(target)["body"])
    assert schedule["plain_headers"] == ["x-source"]

    run = run_now(api, schedule["id"])
    done = wait_for(lambda: finished(database_url, run["id"]), timeout=60, what="the run")
    assert done["outcome"] == "success", done
    # The target got the real request...
    (hit,) = target.hits_for("/echo")
    assert hit.path == f"/echo?api_key={SECRETS['query']}&page=2"
    assert hit.headers["Authorization"] == SECRETS["authorization"]
    assert (
        hit.headers["X-Bearer"] == SECRETS["bearer"]
        and hit.headers["X-Client-Code"] == SECRETS["client_code"]
    )
    assert hit.headers["X-Source"] == "kiosk-test" and json.loads(hit.body) == {
        "password": SECRETS["body"]
    }
    # ...and echoed the query back: the stored excerpt has it masked.
    history = runs(api.url, schedule["id"])
    assert history["runs"][0]["response_excerpt"] == f"ok /echo?api_key={MASK}&page=2"

    assert leaked(every_table(database_url)) == []
    answers = [
        httpx.get(f"{api.url}{path}", headers=AUTH, timeout=30).text
        for path in (
            "/admin/schedules",
            f"/admin/schedules/{schedule['id']}",
            f"/admin/schedules/{schedule['id']}/runs",
            "/admin/audit",
            f"/admin/jobs/{run['job_id']}",
        )
    ]
    dashboard = sign_in(api.url)
    pages = [
        dashboard.get(path).text
        for path in (
            "/admin/ui/schedules",
            f"/admin/ui/schedules/{schedule['id']}",
            "/admin/ui/audit",
            f"/admin/ui/jobs/{run['job_id']}",
        )
    ]
    assert "X-Bearer: ********" in pages[1] and "X-Source: kiosk-test" in pages[1]
    assert f"/echo?api_key={MASK}" in pages[0]
    assert leaked("\n".join(answers + pages)) == []
    assert leaked(api.output() + worker.output()) == []
    assert "schedules.execute_run" in worker.output()  # the worker did log, at debug level


def test_moving_the_url_to_another_origin_needs_the_secrets_again(
    api, target, database_url, workers
):
    workers()
    request = full_request(target)
    schedule = create(api.url, **request)
    stored = get(api, schedule["id"])
    other = f"http://localhost:{target.port}/stolen"  # another host: another origin

    for change in (
        {"url": other},  # masks kept by omission
        {"url": other, "headers": stored["headers"], "body": MASK},  # masks sent back
        {"url": other, "headers": request["headers"]},  # the body is still kept
        {"url": other, "body": "{}"},  # the headers still kept
        {"url": other.replace("/stolen", "/x?api_key=" + MASK), "headers": {}, "body": None},
    ):
        response = patch(api, schedule["id"], **change)
        assert response.status_code == 422, (change, response.text)
        assert (
            "another origin" in response.json()["detail"] or "masked" in response.json()["detail"]
        )
    assert get(api, schedule["id"]) | {"next_runs": None} == stored | {"next_runs": None}

    # The same origin: masks keep the stored secrets, and the shown URL keeps the real query.
    kept = patch(
        api, schedule["id"], name="renamed", url=stored["url"], headers=stored["headers"], body=MASK
    )
    assert kept.status_code == 200, kept.text
    run = run_now(api, schedule["id"])
    assert (
        wait_for(lambda: finished(database_url, run["id"]), timeout=60, what="run")["outcome"]
        == "success"
    )
    hit = target.hits_for("/echo")[-1]
    assert hit.path == f"/echo?api_key={SECRETS['query']}&page=2"
    assert hit.headers["Authorization"] == SECRETS["authorization"]
    assert json.loads(hit.body) == {"password": SECRETS["body"]}

    # Marking a stored secret plain needs its value: the mark alone would reveal it.
    refused = patch(api, schedule["id"], plain_headers=["X-Client-Code"])
    assert refused.status_code == 422 and "send its value" in refused.json()["detail"]
    assert (
        patch(
            api, schedule["id"], plain_headers=["Authorization"], headers=request["headers"]
        ).status_code
        == 422
    )  # never plain

    # Everything sent again: the new origin gets the new values, never the old ones.
    moved = patch(
        api,
        schedule["id"],
        url=other,
        headers={"Authorization": "Bearer new-value-9999"},
        body=None,
    )
    assert moved.status_code == 200, moved.text
    run = run_now(api, schedule["id"])
    assert (
        wait_for(lambda: finished(database_url, run["id"]), timeout=60, what="run")["outcome"]
        == "success"
    )
    (stolen,) = target.hits_for("/stolen")
    assert stolen.headers["Authorization"] == "Bearer new-value-9999" and stolen.body == b""
    assert stolen.headers["Host"] == f"localhost:{target.port}"
    assert leaked(str(stolen)) == []


def test_without_a_key_secrets_are_refused_runs_fail_and_start_up_says_so(
    api, target, database_url, workers, tmp_path
):
    sealed = create(api.url, **full_request(target))
    keyless = Api(child_env(database_url, **ALLOW_LOOPBACK, KIOSK_SECRET_KEY=""), tmp_path)
    try:
        refused = httpx.post(
            f"{keyless.url}/admin/schedules",
            headers=AUTH,
            timeout=30,
            json=full_request(target) | {"name": "other"},
        )
        assert (
            refused.status_code == 503 and "KIOSK_SECRET_KEY is not set" in refused.json()["detail"]
        )
        assert count(database_url, "SELECT count(*) FROM schedules") == 1
        plain = httpx.post(
            f"{keyless.url}/admin/schedules",
            headers=AUTH,
            timeout=30,
            json={
                "name": "plain",
                "cron": YEARLY,
                "url": f"{target.url}/plain",
                "headers": {"Accept": "text/plain"},
            },
        )
        assert plain.status_code == 201, plain.text
        # Listing needs no key; editing a schedule that holds secrets does.
        assert httpx.get(f"{keyless.url}/admin/schedules", headers=AUTH).status_code == 200
        assert patch(keyless, sealed["id"], name="x").status_code == 503
        lines = [
            line for line in keyless.output().splitlines() if "KIOSK_SECRET_KEY is not set" in line
        ]
        assert len(lines) == 1, keyless.output()
    finally:
        keyless.stop()

    workers(KIOSK_SECRET_KEY="")
    hits = len(target.hits_for("/echo"))
    run = run_now(api, sealed["id"])
    done = wait_for(lambda: finished(database_url, run["id"]), timeout=60, what="the run")
    assert done["outcome"] == "failed" and "KIOSK_SECRET_KEY is not set" in done["error"]
    assert done["attempts"] == 1 and len(target.hits_for("/echo")) == hits  # nothing sent, no retry


def test_schedules_list_is_keyset_paginated(api, target):
    created = [
        create(api.url, name=f"s{i}", cron=YEARLY, url=f"{target.url}/p{i}")["id"] for i in range(5)
    ]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = httpx.get(
            f"{api.url}/admin/schedules", params=params, headers=AUTH, timeout=30
        ).json()
        seen += [s["id"] for s in page["schedules"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == created and pages == 3
    for params in ({"cursor": "nope"}, {"limit": 0}, {"limit": 201}):
        response = httpx.get(f"{api.url}/admin/schedules", params=params, headers=AUTH, timeout=30)
        assert response.status_code == 422 and response.json()["detail"], params
    dashboard = sign_in(api.url)
    assert "not a page of this list" in dashboard.get("/admin/ui/schedules?cursor=nope").text


# --- the migration and the key's rotation, in process ---------------------------------------------

OLD_ROW = {
    "url": "https://partner.example/sync?api_key=" + SECRETS["query"],
    "headers": {
        "Authorization": SECRETS["authorization"],
        "X-Bearer": SECRETS["bearer"],
        "Accept": "application/json",
    },
    "body": json.dumps({"password": SECRETS["body"]}),
}


@pytest.fixture
def settings_env(monkeypatch) -> Iterator[Callable[[str], None]]:
    def use_key(value: str) -> None:
        monkeypatch.setenv("KIOSK_SECRET_KEY", value)
        get_settings.cache_clear()

    yield use_key
    monkeypatch.setenv("KIOSK_SECRET_KEY", SECRET_KEY)
    get_settings.cache_clear()


def test_the_migration_encrypts_existing_rows_and_needs_the_key_for_them(
    scratch_database, settings_env
):
    url = scratch_database()
    # The revision just before the one that encrypts (the chain grows as migrations are added).
    before = (
        ScriptDirectory.from_config(migrations.alembic_config()).get_revision("0015").down_revision
    )
    assert isinstance(before, str)
    migrations.upgrade(url, before)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO schedules "
            "(name, cron, method, url, headers, body, timeout_seconds, max_attempts) "
            "VALUES ('old', '* * * * *', 'POST', %s, %s, %s, 10, 3), "
            "('bare', '* * * * *', 'GET', 'https://partner.example/ping', '{}', NULL, 10, 3)",
            (OLD_ROW["url"], json.dumps(OLD_ROW["headers"]), OLD_ROW["body"]),
        )
    rows_before = every_table(url)
    assert len(leaked(rows_before)) == 4

    settings_env("")
    with pytest.raises(RuntimeError, match="KIOSK_SECRET_KEY is not set"):
        migrations.upgrade(url)
    assert every_table(url) == rows_before  # nothing changed, still before 0015

    settings_env(SECRET_KEY)
    migrations.upgrade(url)
    assert leaked(every_table(url)) == []
    with psycopg.connect(url) as conn:
        old, bare = conn.execute(
            "SELECT url, headers, secret_headers, body_bytes, secrets FROM schedules "
            "ORDER BY name DESC"
        ).fetchall()
    assert (old[0], old[1], sorted(old[2]), old[3]) == (
        "https://partner.example/sync?api_key=" + MASK,
        {"Accept": "application/json"},
        ["Authorization", "X-Bearer"],
        len(OLD_ROW["body"]),
    )
    opened = secretbox.Keyring([SECRET_KEY]).open(old[4])
    assert opened == {
        "headers": {"Authorization": SECRETS["authorization"], "X-Bearer": SECRETS["bearer"]},
        "body": OLD_ROW["body"],
        "url": OLD_ROW["url"],
    }
    assert bare == ("https://partner.example/ping", {}, [], None, None)

    migrations.downgrade(url, before)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT url, headers, body FROM schedules WHERE name = 'old'").fetchone()
    assert row == (OLD_ROW["url"], OLD_ROW["headers"], OLD_ROW["body"])


async def test_rotate_secrets_re_encrypts_with_the_first_key(pool, database_url, settings_env):
    from kiosk.audit import Operator
    from kiosk.schedules import service
    from kiosk.schedules.spec import ScheduleSpec

    spec = ScheduleSpec(
        name="rotated",
        cron=YEARLY,
        url="http://93.184.215.14/x",
        headers={"Authorization": SECRETS["authorization"]},
        body=SECRETS["body"],
    )
    view = await service.create(spec, by=Operator("test"))
    new_key = Fernet.generate_key().decode()
    env = child_env(database_url, KIOSK_SECRET_KEY=f"{new_key},{SECRET_KEY}")
    command = [sys.executable, "-m", "kiosk.cli", "rotate-secrets"]
    first = await asyncio.to_thread(
        subprocess.run,
        command,
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0 and "secrets of 1 schedules" in first.stdout, first.stderr
    again = await asyncio.to_thread(
        subprocess.run,
        command,
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "secrets of 0 schedules" in again.stdout

    with psycopg.connect(database_url) as conn:
        (token,) = conn.execute(
            "SELECT secrets FROM schedules WHERE id = %s", (view.schedule.id,)
        ).fetchone()
    assert secretbox.Keyring([new_key]).open(token)["headers"] == {
        "Authorization": SECRETS["authorization"]
    }
    with pytest.raises(secretbox.SecretUnreadable):
        secretbox.Keyring([SECRET_KEY]).open(token)
    # The old key alone no longer reads the schedule: edits say why.
    settings_env(SECRET_KEY)
    with pytest.raises(secretbox.SecretUnreadable):
        await service.update(view.schedule.id, {"name": "renamed"}, by=Operator("test"))
    settings_env(f"{new_key}")
    renamed = await service.update(view.schedule.id, {"name": "renamed"}, by=Operator("test"))
    assert renamed.schedule.unseal(secretbox.keyring()).body == SECRETS["body"]


def test_bad_keys_are_refused_at_start_up_without_echoing_them():
    with pytest.raises(ValueError, match="key 2 is not a Fernet key") as refused:
        secretbox.parse_keys(f"{SECRET_KEY}, not-a-key-value")
    assert "not-a-key-value" not in str(refused.value)
    assert secretbox.parse_keys(f" {SECRET_KEY} ,") == [SECRET_KEY]
