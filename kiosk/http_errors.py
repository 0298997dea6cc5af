"""The exceptions every HTTP answer maps the same way, in one table, and their JSON handlers.

`TABLE` says what each known exception answers (`Answer`: status, detail, headers); it is the one
place a domain error becomes a status. `install` registers the JSON handler for each class as the
app's exception handlers; the dashboard renders the same answers as its HTML error page
(kiosk/dashboard/routes.py); the webhook fast path, which runs before FastAPI's routing
(kiosk/webhooks/routes.py), catches `KNOWN` itself and answers with `handler_for`, the same
function. Nothing here reads Starlette's handler tables, so the fast path depends on no framework
internals (Starlette's own lookup changed under a FastAPI update).

Invariant: the classes in `TABLE` are either unrelated or mapped to the same answer
(`PoolTimeout` is an `OperationalError`), so the first `isinstance` match is also the most
specific one, as Starlette's lookup along the class's MRO would find.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kiosk.errors import DomainError
from kiosk.logclip import clip

logger = logging.getLogger("kiosk")

Handler = Callable[[Request, Any], Awaitable[JSONResponse]]


@dataclass(frozen=True)
class Answer:
    """What an HTTP answer to an exception says, whatever its format (JSON or an HTML page)."""

    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


def database_unavailable(exc: Exception) -> Answer:
    logger.warning("database unavailable: %s", type(exc).__name__)
    return Answer(503, "database unavailable")


def invalid_value(exc: psycopg.DataError) -> Answer:
    """A value the database cannot take (a NUL byte in text, a number beyond bigint): bad input."""
    message = clip(str(exc).split("\n", 1)[0])  # PostgreSQL may quote the value it refused
    logger.warning("refused a value the database cannot store: %s", message)
    return Answer(422, f"invalid value: {message}")


def domain_error(exc: DomainError) -> Answer:
    return Answer(exc.status, exc.detail, exc.headers())


TABLE: tuple[tuple[type[Exception], Callable[[Any], Answer]], ...] = (
    (psycopg_pool.PoolTimeout, database_unavailable),
    (psycopg.OperationalError, database_unavailable),
    (psycopg.DataError, invalid_value),
    (DomainError, domain_error),
)
KNOWN: tuple[type[Exception], ...] = tuple(cls for cls, _ in TABLE)


def answer_for(exc: Exception) -> Answer:
    """The answer to an exception caught as one of `KNOWN`."""
    return next(answer(exc) for cls, answer in TABLE if isinstance(exc, cls))


async def json_answer(_: Request, exc: Exception) -> JSONResponse:
    answer = answer_for(exc)
    return JSONResponse(
        {"detail": answer.detail}, status_code=answer.status, headers=answer.headers or None
    )


HANDLERS: tuple[tuple[type[Exception], Handler], ...] = tuple((cls, json_answer) for cls in KNOWN)


def install(app: FastAPI) -> None:
    for cls, handler in HANDLERS:
        app.add_exception_handler(cls, handler)


def handler_for(exc: Exception) -> Handler:
    """The handler of an exception caught as one of `KNOWN`."""
    return next(handler for cls, handler in HANDLERS if isinstance(exc, cls))
