"""OpenTelemetry tracing, exported by the real API and worker to an OTLP/HTTP receiver on loopback.

One signed notification gives one trace: the webhook request's server span, the webhook batch,
the processing job (continued from the request through `kiosk_job_traces`), its
`GET /v1/orders/{id}` to Mercado Pago, SQL, and the receipt job the processing job deferred.
Without OTEL_* variables, no opentelemetry module beyond what FastAPI itself imports is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support import PROJECT_DIR, Api, child_env, wait_for
from tests.support.otlp import Receiver, Span
from tests.support.stack import TERMINAL, notify, rows

SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP span kinds


@pytest.fixture(scope="module")
def otlp() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def tracing_env(otlp: Receiver) -> dict[str, str]:
    # Exported every 100 ms, so the test sees spans soon after they end.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def api(
    stack_env: dict[str, str], otlp: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    server = Api({**stack_env, **tracing_env(otlp)}, tmp_path_factory.mktemp("traced-api"))
    yield server
    server.stop()


def one(spans: list[Span], what: str) -> Span:
    assert len(spans) == 1, f"{what}: {spans}"
    return spans[0]


def test_one_notification_is_one_trace_from_webhook_to_receipt(
    api, kiosk, sim, smtp, hook, otlp: Receiver, start_worker, database_url
):
    kiosk.product("coffee", price_cents=250, stock=10)
    order = kiosk.order({"coffee": 1})
    response = kiosk.pay(order["id"])
    assert response.status_code == 201, response.text
    provider_order_id = response.json()["provider_order_id"]
    # The card is approved without the simulator's own notifications: the test sends one.
    sim.webhooks(False)
    sim.tap(TERMINAL, "approve")
    start_worker(**tracing_env(otlp))
    answer = notify(api.url, provider_order_id, 9001)
    assert answer.status_code == 200 and answer.json() == {"status": "received"}
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    wait_for(lambda: smtp.messages, timeout=60, what="the receipt")

    def webhook_span() -> Span | None:
        spans = [s for s in otlp.all() if s.name == "POST /webhooks/mercadopago"]
        return spans[0] if spans else None

    request = wait_for(webhook_span, timeout=30, what="the webhook request span")
    assert request.service == "kiosk-api" and request.kind == SERVER
    assert request.parent_id is None and request.attributes["http.response.status_code"] == 200

    def receipt_spans() -> list[Span]:
        return [s for s in otlp.trace(request.trace_id) if s.name == "job orders.send_receipt"]

    wait_for(receipt_spans, timeout=30, what="the receipt job's span in the webhook's trace")
    trace = otlp.trace(request.trace_id)
    by_id = {span.span_id: span for span in trace}

    def ancestors(span: Span) -> list[str]:
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span.name)
        return chain

    batch = one([s for s in trace if s.name == "webhook batch"], "the batch span")
    assert batch.parent_id == request.span_id
    assert batch.attributes["kiosk.webhook.batch_size"] == 1
    # Its SQL: the named query `store_notifications`, a span named by the statement's operation,
    # not by the `--` comment lines above the query in kiosk/webhooks/queries.sql.
    store = one(
        [
            s
            for s in trace
            if s.parent_id == batch.span_id
            and s.kind == CLIENT
            and "kiosk_store_notifications_v1(" in str(s.attributes.get("db.statement"))
        ],
        "the batch's SQL span",
    )
    assert store.name == "SELECT"
    assert str(store.attributes["db.statement"]).startswith("SELECT id, notification_id")

    (job_id,) = [
        r["id"]
        for r in rows(
            database_url,
            "SELECT id FROM procrastinate_jobs WHERE task_name = %s",
            ("payments.process_notification",),
        )
    ]
    job = one([s for s in trace if s.name == "job payments.process_notification"], "the job span")
    assert job.service == "kiosk-worker" and job.kind == CONSUMER
    assert job.parent_id == request.span_id  # continued from the request that deferred it
    assert job.attributes["messaging.message.id"] == str(job_id)
    assert job.attributes["kiosk.job.attempt"] == 1 and job.start >= request.start

    reads = [
        s
        for s in trace
        if s.kind == CLIENT
        and f"/v1/orders/{provider_order_id}" in str(s.attributes.get("http.url"))
        and s.attributes.get("http.method") == "GET"
    ]
    read = one(reads, "the GET /v1/orders/{id} span")
    assert read.parent_id == job.span_id and read.service == "kiosk-worker"
    sql = [
        s
        for s in trace
        if s.kind == CLIENT and s.service == "kiosk-worker" and "db.system" in s.attributes
    ]
    assert any(job.span_id == s.parent_id for s in sql)
    # Every SQL span, the worker's named queries included, carries its operation as its name.
    operations = {s.name for s in trace if s.kind == CLIENT and "db.system" in s.attributes}
    assert {"SELECT", "INSERT", "UPDATE"} <= operations and "--" not in operations, operations

    receipt = one(receipt_spans(), "the receipt job span")
    assert "job payments.process_notification" in ancestors(receipt)
    assert receipt.start >= job.start
    assert ancestors(receipt)[-1] == "POST /webhooks/mercadopago"

    # The trace context rows went with nothing else: one per job deferred while tracing.
    saved = rows(database_url, "SELECT job_id, traceparent FROM kiosk_job_traces")
    assert {r["job_id"] for r in saved} >= {job_id}
    assert all(r["traceparent"].split("-")[1] for r in saved)
    # No span of a worker's polling or heartbeat: every SQL span belongs to a request or job.
    assert all(s.parent_id for s in otlp.all() if s.kind == CLIENT)


def test_tracing_off_imports_no_opentelemetry_sdk(database_url):
    """Without OTEL_* variables the API and the worker app load no tracing code: the webhook path
    checks one attribute, `kiosk.tracing.ENABLED`."""
    env = {k: v for k, v in child_env(database_url).items() if not k.startswith("OTEL_")}
    script = """
import json, sys
import kiosk.app, kiosk.tracing, tasks
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
tracing = sorted(m for m in sys.modules if m.startswith(("kiosk.tracing.", "opentelemetry.sdk",
    "opentelemetry.instrumentation", "opentelemetry.exporter")) and m != "kiosk.tracing.errors")
print(json.dumps([kiosk.tracing.ENABLED, tracing, loaded]))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    enabled, tracing_modules, otel = json.loads(out.splitlines()[-1])
    assert enabled is False and tracing_modules == []
    # What remains is opentelemetry-api, which FastAPI (>= 0.165) imports for its own hook.
    assert all(not m.startswith("opentelemetry.sdk") for m in otel)
