"""ASGI middleware timing every HTTP request by method, route template and status."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from kiosk.metrics import HTTP_LATENCY


class LatencyMiddleware:
    """Pure ASGI (no per-request objects of its own) so it costs next to nothing on the hot path."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # The template (/orders/{order_id}), never the raw path: label values stay few.
            template = getattr(route, "path", None) or "unmatched"
            HTTP_LATENCY.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
