"""`GET /health/workers`: public, for external monitors (Railway has no command health checks)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kiosk import db, heartbeat
from kiosk.settings import get_settings

router = APIRouter(tags=["health"])


@router.get(
    "/health/workers",
    responses={503: {"description": "no worker has a fresh heartbeat, or the database is down"}},
)
async def workers_health() -> JSONResponse:
    """200 with counts while at least one worker has a fresh heartbeat, else 503."""
    stale_seconds = get_settings().worker_stale_seconds
    async with db.pool().connection(timeout=5) as conn:
        fleet = await heartbeat.fleet(conn, stale_seconds)
    counts = {"fresh": fleet.fresh, "stale": fleet.stale, "stale_after_seconds": stale_seconds}
    if not fleet.alive:
        detail = f"no worker heartbeat in the last {stale_seconds}s"
        return JSONResponse({"detail": detail, **counts}, status_code=503)
    return JSONResponse({"status": "ok", **counts})
