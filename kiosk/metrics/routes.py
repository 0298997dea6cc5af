"""`GET /metrics` for Prometheus, behind a bearer token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kiosk import metrics
from kiosk.auth import token_matches
from kiosk.errors import Unauthorized
from kiosk.settings import get_settings

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="metricsToken",
    description="KIOSK_METRICS_TOKEN, or the admin token when that is not set",
)


async def require_scraper(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    """KIOSK_METRICS_TOKEN when set (so Prometheus holds no admin power), else the admin token."""
    presented = credentials.credentials if credentials else None
    expected = get_settings().metrics_token.get_secret_value()
    ok = (
        (presented is not None and hmac.compare_digest(presented.encode(), expected.encode()))
        if expected
        else token_matches(presented)
    )
    if not ok:
        raise Unauthorized("metrics token required")


router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[Depends(require_scraper)],
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}}},
    summary="Prometheus text: jobs, queues, workers, webhooks, job durations, HTTP latency",
)
async def get_metrics() -> Response:
    return Response(await metrics.scrape(), media_type=metrics.CONTENT_TYPE)
