"""`POST /webhooks/mercadopago`: size cap, signature, parse, then one transaction, then 200.

Nothing is stored for a request that is too big (413), unsigned or badly signed or stale (401), or
malformed (400). No call to Mercado Pago happens here: a worker does that.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from kiosk.metrics import WEBHOOKS
from kiosk.settings import get_settings
from kiosk.webhooks import inbox, signature

router = APIRouter(tags=["webhooks"])
logger = logging.getLogger("kiosk.webhooks")


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="invalid Content-Length")
        if int(declared) > limit:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                detail=f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                detail=f"body larger than {limit} bytes")
    return bytes(body)


@router.post(
    "/webhooks/mercadopago",
    # The answer is built here: no response model to validate and serialize on the hot path.
    response_model=None,
    responses={200: {"description": "stored (received or ignored) or a duplicate",
                     "content": {"application/json": {"example": {"status": "received"}}}},
               400: {"description": "malformed"}, 401: {"description": "bad signature"},
               413: {"description": "body too large"}},
)
async def mercadopago(request: Request) -> JSONResponse:
    """Mercado Pago's notification endpoint (signed with MP_WEBHOOK_SECRET)."""
    settings = get_settings()
    try:
        body = await read_capped(request, settings.webhook_max_bytes)
    except HTTPException as exc:
        WEBHOOKS.inc(1, "too_large" if exc.status_code == 413 else "malformed")
        raise
    data_id = request.query_params.get("data.id")
    request_id = request.headers.get("x-request-id")
    try:
        signature.verify(
            request.headers.get("x-signature"),
            data_id,
            request_id,
            settings.mp_webhook_secret.get_secret_value(),
            settings.webhook_tolerance_seconds,
        )
    except signature.InvalidSignature as exc:
        logger.warning("webhook refused (request id %s): %s", request_id, exc)
        WEBHOOKS.inc(1, "bad_signature")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(exc)) from None
    try:
        notification = inbox.parse(body, data_id, request.query_params.get("type"), request_id)
    except inbox.Malformed as exc:
        logger.warning("webhook malformed (request id %s): %s", request_id, exc)
        WEBHOOKS.inc(1, "malformed")
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    accepted = await inbox.accept(notification)
    WEBHOOKS.inc(1, accepted.state)
    # DEBUG: the inbox row records the same (refusals above are warnings).
    logger.debug("webhook %s for %s: %s", notification.notification_id, notification.resource_id,
                accepted.state)
    return JSONResponse({"status": accepted.state})
