"""Every request gets an id: the client's `x-request-id` when sane, else a new one.

The id goes into the log context (`kiosk.logs`: every line written while the request is served,
uvicorn's access line included, carries `request_id`) and back to the client as `x-request-id`
in every answer, errors and 500s included (this middleware wraps FastAPI's whole stack). A
client's id is taken only when it is 1-128 characters of letters, digits, `.`, `_` and `-`:
anything else (too long, spaces, line breaks) could forge or flood log lines, so a new id
replaces it.
"""

from __future__ import annotations

import os
import string
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request

from kiosk import logs
from kiosk.logclip import clip

HEADER = b"x-request-id"
_ALLOWED = string.ascii_letters.encode() + string.digits.encode() + b"._-"


def sane(value: bytes) -> bool:
    """1-128 characters of letters, digits, `.`, `_`, `-` (deleting those leaves nothing)."""
    return 0 < len(value) <= 128 and not value.translate(None, _ALLOWED)


class RequestId:
    """Pure ASGI, as the other hot-path middlewares: a header scan and a contextvar per request."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == HEADER:
                request_id = value if sane(value) else None
                break
        if request_id is None:
            request_id = os.urandom(16).hex().encode()  # as unique as a uuid4, cheaper
        # Not reset afterwards: uvicorn runs each request in a task of its own, whose context
        # ends with it, and its error log for an exception that escaped the app still has the id.
        logs.start_request(request_id.decode())

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                # Appended in place, as Starlette's MutableHeaders does: the list is this answer's.
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append((HEADER, request_id))
                else:
                    message["headers"] = [*(headers or ()), (HEADER, request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


PATH_IDS = ("order_id", "schedule_id", "intent_id", "job_id")


async def bind_path_ids(request: Request) -> None:
    """App-wide dependency: the ids in a route's path (`/orders/{order_id}`) join the log context.

    Async, so it runs in the request's own task and the endpoint and the access line see them."""
    params = request.path_params
    if params:
        logs.bind(**{name: clip(str(params[name]), 128) for name in PATH_IDS if name in params})
