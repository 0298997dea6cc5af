"""The JSON log formatter, the log context, the request id's rules and tracing's on/off rule."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from kiosk import logs
from kiosk.request_id import RequestId, sane
from kiosk.tracing import enabled_by


def record(message: str = "paid %s", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("kiosk.payments", logging.INFO, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_record_is_one_json_line_with_the_context_and_its_extras():
    token = logs.start(request_id="r-1", order_id="o-1")
    try:
        with logs.scope(job_id=7):
            line = logs.JsonFormatter().format(record("paid %s", "o-1\nforged", action="x"))
        after = json.loads(logs.JsonFormatter().format(record()))
    finally:
        logs.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"
    assert (entry["level"], entry["logger"]) == ("INFO", "kiosk.payments")
    assert entry["message"] == "paid o-1\nforged"
    assert (entry["request_id"], entry["order_id"], entry["job_id"]) == ("r-1", "o-1", 7)
    assert entry["action"] == "x"
    assert "job_id" not in after and after["request_id"] == "r-1"  # the scope ended
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record()))


def test_procrastinate_job_extras_and_uvicorn_access_args_become_fields():
    job = {"id": 12, "task_name": "orders.send_receipt", "queue": "default", "attempts": 0}
    entry = json.loads(logs.JsonFormatter().format(record("Starting job", job=job)))
    assert (entry["job_id"], entry["task"], entry["queue"]) == (
        12,
        "orders.send_receipt",
        "default",
    )
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/healthz", "1.1", 200), None,
    )  # fmt: skip
    access.__dict__["color_message"] = "coloured"
    entry = json.loads(logs.JsonFormatter().format(access))
    assert entry["path"] == "/healthz" and entry["status"] == 200 and entry["method"] == "GET"
    assert "color_message" not in entry


def test_exc_info_is_a_clipped_string_ending_with_the_error():
    try:
        raise ValueError("x" * 20_000)
    except ValueError:
        rec = logging.LogRecord("kiosk", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    entry = json.loads(logs.JsonFormatter().format(rec))
    assert isinstance(entry["exc_info"], str)
    assert len(entry["exc_info"]) <= logs.EXC_LIMIT + 40
    assert entry["exc_info"].startswith("[") and entry["exc_info"].endswith("x")


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (b"abc-123_X.y", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"", False),
        (b"a b", False),
        (b"a\nb", False),
        (b"\xc3\xa9", False),
    ],
)
def test_a_client_request_id_is_kept_only_when_sane(value: bytes, kept: bool):
    assert sane(value) is kept


def test_the_request_id_is_echoed_and_in_the_context():
    seen: dict[str, object] = {}

    async def app(scope, receive, send):  # noqa: ANN001
        seen.update(logs.current())
        await send({"type": "http.response.start", "status": 204, "headers": [(b"a", b"b")]})

    async def run(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await RequestId(app)({"type": "http", "headers": headers}, None, send)
        return sent[0]["headers"]

    headers = asyncio.run(run([(b"x-request-id", b"abc")]))
    assert headers == [(b"a", b"b"), (b"x-request-id", b"abc")] and seen == {"request_id": "abc"}
    made = dict(asyncio.run(run([(b"x-request-id", b"a b")])))[b"x-request-id"]
    assert len(made) == 32 and seen == {"request_id": made.decode()}


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SERVICE_NAME": "kiosk"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_variables_say_so(env: dict[str, str], on: bool):
    assert enabled_by(env) is on
