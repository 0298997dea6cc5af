"""`POST /orders/{id}/payment-intents`: charge an order on a card terminal."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from kiosk.devices.access import RESPONSES as AUTH_RESPONSES, DeviceCaller
from kiosk.orders import store as orders
from kiosk.payments import intents

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
        409: {"description": "order not payable, or terminal busy"},
        502: {"description": "Mercado Pago failed; the intent is in error"},
        504: {"description": "Mercado Pago did not answer in time; the intent is in error"},
    },
)
async def create_payment_intent(order_id: uuid.UUID, body: IntentIn, caller: DeviceCaller) -> IntentOut:
    caller.check_terminal(body.terminal_id)
    await orders.check_owner(order_id, caller.device_id)
    intent = await intents.create(order_id, body.terminal_id)
    return IntentOut(id=intent.id, order_id=intent.order_id, terminal_id=intent.terminal_id,
                     provider_order_id=intent.provider_order_id, status=intent.status)
