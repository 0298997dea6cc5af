"""Who calls an order endpoint: `Authorization: Bearer <device token or KIOSK_ADMIN_TOKEN>`.

The FastAPI side of kiosk.devices (routes depend on `DeviceCaller`). A request is answered 429
while its client address is over the failed-authentication limit, before its token is looked at;
401 without a token, or with an unknown or revoked one, and that failure is counted. The admin
token is compared in constant time without the database; a device token costs one indexed
lookup.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kiosk.auth import Responses, token_matches
from kiosk.devices import store
from kiosk.devices.limiter import FailureWindow
from kiosk.errors import TooManyRequests, Unauthorized
from kiosk.settings import get_settings

logger = logging.getLogger("kiosk.devices")

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="deviceToken",
    description=(
        "a device token (POST /admin/devices), or KIOSK_ADMIN_TOKEN for any order and terminal"
    ),
)
# Documented on every order endpoint.
RESPONSES: Responses = {
    401: {"description": "device token missing, unknown or revoked"},
    429: {
        "description": "too many failed authentications from this address, or too many unpaid "
        "orders on this device; `Retry-After` says when to try again"
    },
}


@functools.cache
def failures() -> FailureWindow:
    settings = get_settings()
    return FailureWindow(settings.auth_failure_limit, settings.auth_failure_window_seconds)


async def order_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> store.Caller:
    address = request.client.host if request.client else "unknown"
    window = failures()
    wait = window.retry_after(address)
    if wait:
        raise TooManyRequests(
            "too many failed authentications from this address; try again later", wait
        )
    token = credentials.credentials if credentials is not None else None
    if token:
        if token_matches(token):
            return store.ADMIN
        device = await store.authenticate(token)
        if device is not None:
            return store.Caller(device)
    window.fail(address)
    if window.retry_after(address):
        # Once per lock-out: from now on this address is refused before its token is read.
        logger.warning(
            "order endpoints: %s failed authentication %d times in %g s; refused for %d s",
            address,
            window.limit,
            window.window,
            window.retry_after(address),
        )
    raise Unauthorized(
        "device token required: Authorization: Bearer <device token>"
        if not token
        else "unknown or revoked device token"
    )


# Route parameter of every order endpoint: `caller: DeviceCaller`.
DeviceCaller = Annotated[store.Caller, Depends(order_caller)]
