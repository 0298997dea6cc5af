"""The ASGI application, `kiosk.app:app`.

Settings are validated when this module is imported, so a bad configuration stops `uvicorn` with
one line naming the variable instead of a server that half works.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from kiosk import db, health, http_errors, logs, queue, secretbox, tracing
from kiosk.admin import routes as admin_routes
from kiosk.catalog import routes as catalog_routes
from kiosk.dashboard import routes as dashboard_routes
from kiosk.devices import routes as devices_routes
from kiosk.exports import routes as exports_routes
from kiosk.heartbeat import routes as heartbeat_routes
from kiosk.http_limits import HeadLimit
from kiosk.logclip import ClipArgs
from kiosk.metrics import routes as metrics_routes
from kiosk.metrics.http import LatencyMiddleware
from kiosk.notifications import routes as deliveries_routes
from kiosk.orders import payment_routes as payments_routes
from kiosk.orders import routes as orders_routes
from kiosk.payments import admin_routes as payments_admin_routes
from kiosk.queues import routes as queues_routes
from kiosk.queues import service as queues_service
from kiosk.request_id import RequestId, bind_path_ids
from kiosk.schedules import routes as schedules_routes
from kiosk.settings import Settings, load_or_exit
from kiosk.webhooks import routes as webhooks_routes

# One router per area: the kiosk's API, then the operators' surface. Mercado Pago's notifications
# are the hottest path, so their route is matched first.
ROUTERS = (
    webhooks_routes,
    catalog_routes,
    orders_routes,
    payments_routes,
    heartbeat_routes,
    admin_routes,
    queues_routes,
    schedules_routes,
    exports_routes,
    metrics_routes,
    dashboard_routes,
    devices_routes,
    payments_admin_routes,
    deliveries_routes,
)

logger = logging.getLogger("kiosk")

# Tracing off (kiosk/tracing): FastAPI's native hook (0.16x) would still look OTEL_* variables
# up in the environment on every request (~4 % of the webhook path's CPU, docs/benchmarks.md).
# Older FastAPI has no such parameter.
NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def telemetry() -> dict[str, Any]:
    """FastAPI's telemetry options: off, or (tracing on) its HTTP server spans, kiosk's provider."""
    if not tracing.ENABLED or not NO_TELEMETRY:
        return NO_TELEMETRY
    try:
        provider = tracing.setup("kiosk-api")
    except tracing.TracingUnavailable as exc:
        raise SystemExit(f"kiosk: {exc}") from None
    return {
        "telemetry": {
            "tracing": True,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "tracer_provider": provider,
        }
    }


class KioskAPI(FastAPI):
    """FastAPI, with Mercado Pago's notifications answered in front of its middleware stack.

    The hottest path skips FastAPI's own layers (server-error, telemetry and two body-limit
    middlewares: 15-20 % of the API's CPU per notification in a py-spy profile, docs/benchmarks.md),
    none of which it needs: `FastPath` caps the body itself (413), answers known errors with the
    app's handlers (503) and lets others propagate to uvicorn (500, logged). It keeps the latency
    metric and the head limit in front of it. Every other request takes FastAPI's stack.
    """

    webhook: Any = None  # the webhook's own stack, set by create_app

    def build_middleware_stack(self) -> ASGIApp:
        # The request id outermost, around Starlette's error middleware too, so that a 500 answer
        # carries `x-request-id` as well (kiosk/request_id.py).
        return RequestId(super().build_middleware_stack())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            self.webhook is not None
            and scope["type"] == "http"
            and scope["path"] == webhooks_routes.PATH
            and scope["method"] == "POST"
        ):
            scope["app"] = self
            await self.webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    secretbox.warn_if_missing(logger)
    pool = db.create_pool(role="api")
    # Not waiting: the API comes up while the database is down and /readyz says why.
    await pool.open(wait=False)
    # procrastinate defers on the same pool; this process never runs jobs.
    await queue.app.open_async(pool)
    # KIOSK_QUEUE_LIMITS, once the database answers; an operator's run-time limits are kept.
    defaults = asyncio.create_task(
        queues_service.keep_applying_defaults(load_or_exit().queue_limit_map)
    )
    try:
        yield
    finally:
        defaults.cancel()
        await queue.app.close_async()
        await db.close_pool()


def create_app(settings: Settings) -> FastAPI:
    logs.configure(settings.log_format, settings.log_level)
    # uvicorn's access log writes the request target as sent: at most 1000 characters of it.
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ClipArgs) for f in access_log.filters):
        access_log.addFilter(ClipArgs(limit=1000))
    # max_body_size: every route refuses (413) a body past the limit while it streams in, so a
    # huge JSON body is never buffered whole; the webhook's own limit is smaller.
    app = KioskAPI(
        title="kiosk",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        # The ids in a route's path (order_id, ...) join the request's log context.
        dependencies=[Depends(bind_path_ids)],
        **telemetry(),
    )
    http_errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.mount(
        dashboard_routes.STATIC_PATH, dashboard_routes.StaticAssets(), name="dashboard-static"
    )
    # An oversized request head is refused before any route (kiosk/http_limits.py); the latency
    # middleware, outermost, times that too. The webhook has the same two in front of its fast path
    # (kiosk/webhooks/routes.py), outside FastAPI's stack (KioskAPI), and the request id around
    # them as around every other route.
    app.add_middleware(HeadLimit, max_bytes=settings.max_header_bytes)
    app.add_middleware(LatencyMiddleware)
    # With tracing on, the webhook takes FastAPI's stack like any route: its telemetry layer makes
    # the request's server span, which the fast path would skip.
    if not tracing.ENABLED:
        app.webhook = RequestId(
            LatencyMiddleware(
                HeadLimit(webhooks_routes.FastPath(app.router), max_bytes=settings.max_header_bytes)
            )
        )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Readiness: the database answers and its schema is at this code's alembic head."""
        state = await health.readiness()
        if not state.ready:
            return JSONResponse({"detail": state.reason}, status_code=503)
        return JSONResponse({"status": "ready", "revision": state.revision})

    return app


app = create_app(load_or_exit())
