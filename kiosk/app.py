"""The ASGI application, `kiosk.app:app`.

Settings are validated when this module is imported, so a bad configuration stops `uvicorn` with
one line naming the variable instead of a server that half works.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from kiosk import db, health, http_errors, queue, secretbox
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
    schedules_routes,
    exports_routes,
    metrics_routes,
    dashboard_routes,
    devices_routes,
    payments_admin_routes,
    deliveries_routes,
)

logger = logging.getLogger("kiosk")

# kiosk exports no OpenTelemetry data; FastAPI's native hook (0.16x) would still look OTEL_*
# variables up in the environment on every request (~4 % of the webhook path's CPU,
# docs/benchmarks.md). Older FastAPI has no such parameter.
NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    secretbox.warn_if_missing(logger)
    pool = db.create_pool(role="api")
    # Not waiting: the API comes up while the database is down and /readyz says why.
    await pool.open(wait=False)
    # procrastinate defers on the same pool; this process never runs jobs.
    await queue.app.open_async(pool)
    try:
        yield
    finally:
        await queue.app.close_async()
        await db.close_pool()


def create_app(settings: Settings) -> FastAPI:
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    # uvicorn's access log writes the request target as sent: at most 1000 characters of it.
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ClipArgs) for f in access_log.filters):
        access_log.addFilter(ClipArgs(limit=1000))
    # max_body_size: every route refuses (413) a body past the limit while it streams in, so a
    # huge JSON body is never buffered whole; the webhook's own limit is smaller.
    app = FastAPI(
        title="kiosk",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        **NO_TELEMETRY,
    )
    http_errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.mount(
        dashboard_routes.STATIC_PATH, dashboard_routes.StaticAssets(), name="dashboard-static"
    )
    # The webhook skips FastAPI's routing (kiosk/webhooks/routes.py); an oversized request head is
    # refused before it (kiosk/http_limits.py); the latency middleware, added last, stays outermost
    # and times both.
    app.add_middleware(webhooks_routes.FastPath)
    app.add_middleware(HeadLimit, max_bytes=settings.max_header_bytes)
    app.add_middleware(LatencyMiddleware)

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
