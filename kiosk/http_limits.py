"""Refuse an oversized request head before any route, the webhook's fast path included, sees it.

uvicorn (httptools) takes headers and the request target of any size. A 2 MB `x-request-id` used
to reach the webhook's signature check and its warning. Here the header names and values together
over KIOSK_MAX_HEADER_BYTES are answered 431, a request target (path and query string) over it 414,
with a JSON `{"detail": ...}` and nothing else done: no body read, no route, no database, no log
line of ours. The check is a sum over the headers already parsed, about a microsecond per request
(docs/benchmarks.md).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Scope, Send


class HeadLimit:
    """Pure ASGI middleware: 431 for too many header bytes, 414 for too long a target."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = 0
            for name, value in scope["headers"]:
                size += len(name) + len(value)
            if size > self.max_bytes:
                await _refuse(send, 431, f"request headers larger than {self.max_bytes} bytes")
                return
            if len(scope.get("raw_path") or b"") + len(scope["query_string"]) > self.max_bytes:
                await _refuse(send, 414, f"request target longer than {self.max_bytes} bytes")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The client may still be sending a body nobody will read.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
