"""Hostile input found on main (issue 12) that needs no server: separators refused before any
HMAC, log clipping, a client abort on the documented webhook route (the rest, against a real
uvicorn: tests/integration/test_hostile_regressions.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kiosk.webhooks import signature

PATH = "/webhooks/mercadopago"


def test_verify_refuses_separators_before_any_hmac():
    ts = int(time.time())
    for data_id, request_id in (("a;b", None), (None, "r:1"), ("x", "r,1")):
        with pytest.raises(signature.InvalidSignature, match="may not hold"):
            signature.verify(
                signature.header("s", data_id, request_id, ts), data_id, request_id, "s", 300
            )
    assert signature.verify(signature.header("s", "x", "r-1", ts), "x", "r-1", "s", 300) == ts


def test_clip_cuts_and_escapes():
    from kiosk.logclip import clip

    assert clip("short") == "short"
    assert clip("a" * 250) == "a" * 200 + "...[50 more characters]"
    assert clip("line\nforged: ERROR\r\x00") == "line\\nforged: ERROR\\r\\x00"
    assert clip(None) == "None" and clip(12) == "12"


async def test_the_documented_route_counts_a_client_abort_too(settings_env):
    """The FastAPI route (served when the fast path is not installed) shares the handler."""
    from fastapi import FastAPI

    from kiosk import metrics
    from kiosk.webhooks import routes

    bare = FastAPI()
    bare.include_router(routes.router)
    before = metrics.sample("kiosk_webhook_notifications_total", outcome="client_abort") or 0.0
    messages = [
        {"type": "http.request", "body": b'{"id": 1', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"data.id=1&type=payment",
        "server": ("kiosk", 80),
        "client": ("127.0.0.1", 1),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"500"),
            (b"x-signature", b"ts=1,v1=00"),
        ],
    }
    await asyncio.wait_for(bare(scope, receive, send), timeout=10)
    assert sent[0]["status"] == 499
    assert metrics.sample("kiosk_webhook_notifications_total", outcome="client_abort") == before + 1
