"""`POST /orders/{id}/payment-intents`: charge an order on a card terminal."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kiosk.devices.access import RESPONSES as AUTH_RESPONSES
from kiosk.devices.access import DeviceCaller
from kiosk.orders import lifecycle
from kiosk.orders import store as orders

router = APIRouter(tags=["payments"])


class IntentIn(BaseModel):
    terminal_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")


class IntentOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    terminal_id: str
    provider_order_id: str | None
    status: str


@router.post(
    "/orders/{order_id}/payment-intents",
    status_code=status.HTTP_201_CREATED,
    response_model=IntentOut,
    responses={
        # A device token (or the admin token): kiosk/devices/access.py.
        **AUTH_RESPONSES,
        403: {"description": "the terminal is not bound to the calling device"},
        404: {"description": "no such order, or an order of another device"},
        202: {
            "model": IntentOut,
            "description": "Mercado Pago's answer was lost (5xx, timeout, connection dropped "
            "after sending): the intent is `unresolved` while a job re-sends the "
            "same idempotency key; follow it in GET /orders/{id}. The charge may "
            "already be on the terminal; it is never created twice",
        },
        409: {"description": "order not payable, or terminal busy"},
        502: {
            "description": "Mercado Pago refused the charge or could not be reached: nothing "
            "was charged, the intent is in error"
        },
    },
)
async def create_payment_intent(
    order_id: uuid.UUID, body: IntentIn, caller: DeviceCaller
) -> JSONResponse:
    """Charge the order on the terminal: 201 with the created intent, or 202 while unresolved."""
    caller.check_terminal(body.terminal_id)
    await orders.check_owner(order_id, caller.device_id)
    intent = await lifecycle.create(order_id, body.terminal_id)
    out = IntentOut(
        id=intent.id,
        order_id=intent.order_id,
        terminal_id=intent.terminal_id,
        provider_order_id=intent.provider_order_id,
        status=intent.status,
    )
    code = status.HTTP_202_ACCEPTED if intent.status == "unresolved" else status.HTTP_201_CREATED
    return JSONResponse(out.model_dump(mode="json"), status_code=code)
