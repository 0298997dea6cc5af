"""`POST /orders/{id}/payment-intents`: charge an order on a card terminal."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

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
        409: {"description": "order not payable, or terminal busy"},
        502: {"description": "Mercado Pago failed; the intent is in error"},
        504: {"description": "Mercado Pago did not answer in time; the intent is in error"},
    },
)
async def create_payment_intent(order_id: uuid.UUID, body: IntentIn) -> IntentOut:
    intent = await intents.create(order_id, body.terminal_id)
    return IntentOut(id=intent.id, order_id=intent.order_id, terminal_id=intent.terminal_id,
                     provider_order_id=intent.provider_order_id, status=intent.status)
