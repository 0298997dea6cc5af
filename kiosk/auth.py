"""Admin authentication: `Authorization: Bearer <KIOSK_ADMIN_TOKEN>`, compared in constant time.

Also who acts on the JSON API (`Actor`), for the audit log of every change.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kiosk.audit import Operator, actor_name
from kiosk.errors import Unauthorized
from kiosk.settings import get_settings

# Declared as a security scheme so the OpenAPI schema documents the token on every admin route.
_bearer = HTTPBearer(auto_error=False, scheme_name="adminToken", description="KIOSK_ADMIN_TOKEN")


def token_matches(presented: str | None) -> bool:
    expected = get_settings().admin_token.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)


async def require_admin(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    """FastAPI dependency for every `/admin/...` JSON route: 401 unless the token matches."""
    if credentials is None or not token_matches(credentials.credentials):
        raise Unauthorized("admin token required: Authorization: Bearer <KIOSK_ADMIN_TOKEN>")


AdminRequired = Depends(require_admin)
# Documented on every admin router: what a caller without the token gets.
# FastAPI's `responses=`: the documented answers of a route or router, by status code.
Responses = dict[int | str, dict[str, Any]]

UNAUTHORIZED: Responses = {401: {"description": "admin token missing or wrong"}}


async def acting_operator(
    request: Request,
    x_kiosk_actor: Annotated[
        str | None,
        Header(
            description=(
                "your name, recorded as the actor of this action in the audit log (default `admin`)"
            ),
        ),
    ] = None,
) -> Operator:
    """Who acts on the JSON API: the optional `X-Kiosk-Actor` header (a name), else the token."""
    return Operator(actor_name(x_kiosk_actor), request.client.host if request.client else None)


# Route parameter of every JSON action that changes something: `by: Actor`.
Actor = Annotated[Operator, Depends(acting_operator)]
