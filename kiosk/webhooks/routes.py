"""`POST /webhooks/mercadopago`: size cap, signature, parse, then one transaction, then 200.

Nothing is stored for a request that is too big (413), unsigned or badly signed or stale (401), or
malformed (400). A client that goes away before its body is in is a client abort (499, which
nobody receives), not an error. No call to Mercado Pago happens here: a worker does that.

`handle` is the endpoint, free of Starlette's request and response objects. It is served by
`FastPath`, a pure ASGI app that `kiosk.app.KioskAPI` calls in front of FastAPI's middleware stack
and routing (the hottest path skips them, the request object and the response class:
docs/benchmarks.md), and by the FastAPI route below, which documents it in the OpenAPI schema and
serves it when the fast path is not installed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from kiosk import http_errors
from kiosk.logclip import clip
from kiosk.metrics import WEBHOOKS
from kiosk.settings import get_settings
from kiosk.webhooks import inbox, signature

PATH = "/webhooks/mercadopago"
router = APIRouter(tags=["webhooks"])
logger = logging.getLogger("kiosk.webhooks")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, str]


class Refused(Exception):
    """A request answered with an error before anything is stored."""

    def __init__(self, status: int, detail: str, outcome: str):
        super().__init__(detail)
        self.answer = Answer(status, {"detail": detail})
        self.outcome = outcome  # the kiosk_webhook_notifications_total label


async def read_capped(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes whatever Content-Length says."""
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "invalid Content-Length", "malformed")
        if int(declared) > limit:
            raise Refused(413, f"body larger than {limit} bytes", "too_large")
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise Refused(413, f"body larger than {limit} bytes", "too_large")
    except ClientDisconnect:
        # nginx's "client closed request": the answer goes nowhere, but the latency metric gets
        # a status that is neither the server's fault (500) nor a refusal.
        raise Refused(
            499, "client closed the connection before sending the whole body", "client_abort"
        ) from None
    return bytes(body)


async def handle(
    query: Mapping[str, str], headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> Answer:
    """Mercado Pago's notification: the answer to send. Database errors propagate (503 upstream)."""
    settings = get_settings()
    data_id = query.get("data.id")
    request_id = headers.get("x-request-id")
    try:
        body = await read_capped(headers.get("content-length"), chunks, settings.webhook_max_bytes)
        try:
            signature.verify(
                headers.get("x-signature"),
                data_id,
                request_id,
                settings.mp_webhook_secret.get_secret_value(),
                settings.webhook_tolerance_seconds,
            )
        except signature.InvalidSignature as exc:
            logger.warning("webhook refused (request id %s): %s", clip(request_id), exc)
            raise Refused(401, str(exc), "bad_signature") from None
        try:
            notification = inbox.parse(body, data_id, query.get("type"), request_id)
        except inbox.Malformed as exc:
            logger.warning("webhook malformed (request id %s): %s", clip(request_id), exc)
            raise Refused(400, str(exc), "malformed") from None
    except Refused as refused:
        if refused.outcome == "client_abort":
            logger.info("webhook client went away mid-body (request id %s)", clip(request_id))
        WEBHOOKS.labels(refused.outcome).inc()
        return refused.answer
    accepted = await inbox.accept(notification)
    WEBHOOKS.labels(accepted.state).inc()
    if logger.isEnabledFor(logging.DEBUG):  # the inbox row records the same (refusals are warnings)
        logger.debug(
            "webhook %s for %s: %s",
            clip(notification.notification_id),
            clip(notification.resource_id),
            accepted.state,
        )
    return Answer(200, {"status": accepted.state})


@router.post(
    PATH,
    response_model=None,
    responses={
        200: {
            "description": "stored (received or ignored) or a duplicate",
            "content": {"application/json": {"example": {"status": "received"}}},
        },
        400: {"description": "malformed"},
        401: {"description": "bad signature"},
        413: {"description": "body too large"},
    },
)
async def mercadopago(request: Request) -> JSONResponse:
    """Mercado Pago's notification endpoint (signed with MP_WEBHOOK_SECRET)."""
    answer = await handle(request.query_params, request.headers, request.stream())
    return JSONResponse(answer.body, status_code=answer.status)


class FastPath:
    """Serves `POST /webhooks/mercadopago` with `handle` before FastAPI's routing; everything else
    goes on. An exception of `kiosk.http_errors.KNOWN` (a database outage: 503) is answered by the
    handler the app registers for it (`http_errors.handler_for`); any other propagates."""

    def __init__(self, app: Any):
        self.app = app
        # The documented route, set in the scope as FastAPI's routing would (the latency label).
        self.route = next(r for r in router.routes if getattr(r, "path", None) == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        try:
            answer = await handle(
                QueryParams(scope["query_string"]), Headers(scope=scope), chunks()
            )
        except http_errors.KNOWN as exc:  # a database outage: 503, as every route answers it
            response = await http_errors.handler_for(exc)(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        body = json.dumps(answer.body, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
