"""Admin authentication: `Authorization: Bearer <KIOSK_ADMIN_TOKEN>`, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request, status

from kiosk.settings import get_settings


def token_matches(presented: str | None) -> bool:
    expected = get_settings().admin_token.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def require_admin(request: Request) -> None:
    """FastAPI dependency for every `/admin/...` JSON route: 401 unless the token matches."""
    if not token_matches(bearer_token(request)):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="admin token required: Authorization: Bearer <KIOSK_ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminRequired = Depends(require_admin)
