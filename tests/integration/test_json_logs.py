"""KIOSK_LOG_FORMAT=json: the real API and worker write one JSON object per line, with context.

A full payment (order, payment intent, the simulator's signed webhooks, the worker's processing,
paid, the receipt) and a scheduled request with secret headers run with DEBUG logs; the output
of both processes parses line by line, carries request_id and job_id where they are known, and
holds none of the secrets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Api, wait_for
from tests.support.config import ACCESS_TOKEN, ADMIN_TOKEN, SECRET_KEY, WEBHOOK_SECRET
from tests.support.schedules import AUTH, FAST, Target, create, run_row
from tests.support.stack import HOOK_SECRET, TERMINAL

JSON_DEBUG = {"KIOSK_LOG_FORMAT": "json", "KIOSK_LOG_LEVEL": "DEBUG"}
SCHEDULE_SECRETS = {
    "Authorization": "Bearer sched-tok-7Q2Z9X",
    "X-Api-Key": "sched-key-4K8M1P",
}
SECRETS = {
    "admin token": ADMIN_TOKEN,
    "MP access token": ACCESS_TOKEN,
    "webhook secret": WEBHOOK_SECRET,
    "notify hook secret": HOOK_SECRET,
    "secret key": SECRET_KEY,
    **{f"schedule header {name}": value for name, value in SCHEDULE_SECRETS.items()},
    "schedule header value (bare)": "sched-tok-7Q2Z9X",
}
# procrastinate's CLI logs its level once, in its own format, before the worker reads its
# settings, and prints (not logs) which queues it works on.
PROCRASTINATE_PREAMBLE = (
    "DEBUG:procrastinate.cli:Log level set to DEBUG",
    "Launching a worker on all queues",
)


@pytest.fixture(scope="module")
def api(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = Api({**stack_env, **FAST, **JSON_DEBUG}, tmp_path_factory.mktemp("json-api"))
    yield server
    server.stop()


def entries(output: str) -> list[dict[str, Any]]:
    """Every line as JSON (a line that is not JSON fails the test, naming it)."""
    parsed = []
    for line in output.splitlines():
        if not line.strip() or line in PROCRASTINATE_PREAMBLE:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line[:300]!r}")
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        assert entry["time"].endswith("Z") and "T" in entry["time"], line
        parsed.append(entry)
    return parsed


def test_a_payment_and_a_scheduled_request_log_json_with_context_and_no_secret(
    api, kiosk, sim, smtp, hook, start_worker, target: Target, database_url
):
    # KIOSK_WORKER_JOB_LOGS: procrastinate's per-job lines (off by default) are checked too.
    worker = start_worker(
        **FAST, **JSON_DEBUG, PROCRASTINATE_LOG_LEVEL="debug", KIOSK_WORKER_JOB_LOGS="true"
    )
    kiosk.product("coffee", price_cents=250, stock=10)
    order = kiosk.order({"coffee": 1})
    response = kiosk.http.post(
        f"/orders/{order['id']}/payment-intents",
        json={"terminal_id": TERMINAL},
        headers={"x-request-id": "kiosk-42.pay_1"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == "kiosk-42.pay_1"  # a sane id is kept
    provider_order_id = response.json()["provider_order_id"]
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    wait_for(lambda: smtp.messages, timeout=60, what="the receipt")

    schedule = create(
        api.url,
        name="partner-ping",
        cron="0 0 1 1 *",
        method="POST",
        url=f"{target.url}/ok",
        headers=SCHEDULE_SECRETS,
        body="{}",
    )
    run = httpx.post(f"{api.url}/admin/schedules/{schedule['id']}/run", headers=AUTH, timeout=30)
    assert run.status_code == 202, run.text
    run_id = run.json()["run"]["id"]
    wait_for(
        lambda: (row := run_row(database_url, run_id)) and row["finished_at"],
        timeout=60,
        what="the scheduled request",
    )
    assert target.hits_for("/ok")[0].headers["X-Api-Key"] == SCHEDULE_SECRETS["X-Api-Key"]

    # An insane request id is replaced, and a 4xx answer carries the id too.
    insane = "a b;c" + "x" * 200
    bad = httpx.get(f"{api.url}/orders/nope", headers={"x-request-id": insane, **AUTH})
    assert bad.status_code == 422 and bad.headers["x-request-id"] not in (insane, "")
    made = httpx.get(f"{api.url}/healthz").headers["x-request-id"]
    assert len(made) == 32 and made != bad.headers["x-request-id"]

    def logged() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return entries(api.output()), entries(worker.output())

    # The access line of the last request is written once its answer is out.
    wait_for(
        lambda: any(e.get("request_id") == made for e in logged()[0]),
        timeout=10,
        what="the access line",
    )
    api_lines, worker_lines = logged()
    everything = api.output() + worker.output()
    assert [name for name, value in SECRETS.items() if value in everything] == []

    # API: every access line carries its request id; the payment's lines carry the order id.
    access = [e for e in api_lines if e["logger"] == "uvicorn.access"]
    assert access and all(e.get("request_id") for e in access)
    (pay_line,) = [e for e in access if e.get("request_id") == "kiosk-42.pay_1"]
    assert pay_line["method"] == "POST" and pay_line["status"] == 201
    assert pay_line["order_id"] == order["id"]
    webhooks = [e for e in access if e.get("path", "").startswith("/webhooks/mercadopago")]
    assert webhooks and all(e["status"] == 200 for e in webhooks)
    debug = [e for e in api_lines if e["level"] == "DEBUG" and e["logger"] == "kiosk.webhooks"]
    assert debug and all(e.get("request_id") for e in debug)

    # Worker: procrastinate's records and kiosk's carry the job; kiosk's carry the ids it knows.
    processing = [e for e in worker_lines if e.get("task") == "payments.process_notification"]
    assert processing and all(isinstance(e.get("job_id"), int) for e in processing)
    procrastinate = [e for e in processing if e["logger"].startswith("procrastinate")]
    assert {"start_job", "job_success"} <= {e.get("action") for e in procrastinate}
    kiosk_lines = [e for e in processing if e["logger"].startswith("kiosk")]
    assert kiosk_lines and all(
        e["provider_order_id"] == provider_order_id and e["attempt"] >= 1 and e["queue"]
        for e in kiosk_lines
    )
    receipts = [e for e in worker_lines if e.get("task") == "orders.send_receipt"]
    assert receipts and all(e["job_id"] for e in receipts)
    assert any(e.get("order_id") == order["id"] for e in receipts)
    schedule_lines = [
        e for e in worker_lines if e["logger"] == "kiosk.schedules" and e.get("run_id") == run_id
    ]
    assert schedule_lines and all(e.get("schedule_id") == schedule["id"] for e in schedule_lines)
    # No line of a job leaks into another job's context.
    for e in worker_lines:
        if e.get("task") and e["logger"].startswith("kiosk") and e.get("job_id"):
            assert e.get("request_id") is None
