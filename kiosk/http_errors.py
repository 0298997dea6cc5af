"""The exceptions every HTTP answer maps the same way, and their handlers, in one place.

`install` registers them as the app's exception handlers; the webhook fast path, which runs
before FastAPI's routing (kiosk/webhooks/routes.py), catches `KNOWN` itself and answers with
`handler_for`, the same functions. Nothing here reads Starlette's handler tables, so the fast
path depends on no framework internals (Starlette's own lookup changed under a FastAPI update).

Invariant: the classes in `HANDLERS` are either unrelated or mapped to the same handler
(`PoolTimeout` is an `OperationalError`), so the first `isinstance` match is also the most
specific one, as Starlette's lookup along the class's MRO would find.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kiosk.errors import DomainError
from kiosk.logclip import clip

logger = logging.getLogger("kiosk")

Handler = Callable[[Request, Any], Awaitable[JSONResponse]]


async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


async def invalid_value(_: Request, exc: psycopg.DataError) -> JSONResponse:
    """A value the database cannot take (a NUL byte in text, an integer past bigint): bad input."""
    message = clip(str(exc).split("\n", 1)[0])  # PostgreSQL may quote the value it refused
    logger.warning("refused a value the database cannot store: %s", message)
    return JSONResponse({"detail": f"invalid value: {message}"}, status_code=422)


async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status, headers=exc.headers() or None
    )


HANDLERS: tuple[tuple[type[Exception], Handler], ...] = (
    (psycopg_pool.PoolTimeout, database_unavailable),
    (psycopg.OperationalError, database_unavailable),
    (psycopg.DataError, invalid_value),
    (DomainError, domain_error),
)
KNOWN: tuple[type[Exception], ...] = tuple(cls for cls, _ in HANDLERS)


def install(app: FastAPI) -> None:
    for cls, handler in HANDLERS:
        app.add_exception_handler(cls, handler)


def handler_for(exc: Exception) -> Handler:
    """The handler of an exception caught as one of `KNOWN`."""
    return next(handler for cls, handler in HANDLERS if isinstance(exc, cls))
