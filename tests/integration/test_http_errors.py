"""The one table of exception handlers, shared by the app and the webhook fast path."""

import asyncio
import itertools
import json

import psycopg
import psycopg_pool
import pytest
from fastapi import FastAPI

from kiosk import errors, http_errors
from kiosk.webhooks import routes as webhook_routes


def test_the_app_registers_exactly_the_shared_handlers(database_url):
    from kiosk.app import app  # settings come from the test database's environment

    for cls, handler in http_errors.HANDLERS:
        assert app.exception_handlers[cls] is handler


def test_first_match_is_the_most_specific_handler():
    """What Starlette's lookup along the MRO finds is what the fast path's `isinstance` finds."""
    for (a, ha), (b, hb) in itertools.permutations(http_errors.HANDLERS, 2):
        if issubclass(a, b):
            assert ha is hb, (a, b)
    app = FastAPI()
    http_errors.install(app)

    for exc in (
        psycopg_pool.PoolTimeout("t"),
        psycopg.OperationalError("o"),
        psycopg.errors.NumericValueOutOfRange("n"),
        errors.TooManyRequests("slow down", 3),
        errors.NotFound("no"),
    ):
        assert isinstance(exc, http_errors.KNOWN)
        starlette = next(
            app.exception_handlers[c] for c in type(exc).__mro__ if c in app.exception_handlers
        )
        assert http_errors.handler_for(exc) is starlette
    assert not isinstance(RuntimeError("x"), http_errors.KNOWN)


def _drive(app, scope):
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


@pytest.mark.parametrize(
    "raised, status",
    [
        (psycopg_pool.PoolTimeout("pool"), 503),
        (psycopg.OperationalError("down"), 503),
        (errors.TooManyRequests("later", 7), 429),
    ],
)
def test_the_fast_path_answers_a_known_error_with_its_handler(monkeypatch, raised, status):
    async def failing(*_args):
        raise raised

    monkeypatch.setattr(webhook_routes, "handle", failing)
    path = webhook_routes.FastPath(app=None)
    scope = {
        "type": "http",
        "method": "POST",
        "path": webhook_routes.PATH,
        "query_string": b"",
        "headers": [],
        "app": None,
    }
    sent = _drive(path, scope)
    assert sent[0]["status"] == status
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body == {"detail": "database unavailable" if status == 503 else "later"}
    if status == 429:
        assert (b"retry-after", b"7") in sent[0]["headers"]


def test_the_fast_path_lets_an_unknown_error_propagate(monkeypatch):
    async def failing(*_args):
        raise RuntimeError("bug")

    monkeypatch.setattr(webhook_routes, "handle", failing)
    scope = {
        "type": "http",
        "method": "POST",
        "path": webhook_routes.PATH,
        "query_string": b"",
        "headers": [],
    }
    with pytest.raises(RuntimeError):
        _drive(webhook_routes.FastPath(app=None), scope)
