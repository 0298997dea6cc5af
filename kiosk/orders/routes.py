"""`POST /orders`, `GET /orders/{id}`, `POST /orders/{id}/cancel`."""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kiosk.auth import Responses
from kiosk.catalog.products import SKU_PATTERN
from kiosk.devices.access import RESPONSES as AUTH_RESPONSES
from kiosk.devices.access import DeviceCaller
from kiosk.orders import lifecycle, store
from kiosk.payments import intents

# Every order endpoint takes a device token (or the admin token): kiosk/devices/access.py.
router = APIRouter(tags=["orders"], responses=AUTH_RESPONSES)
NOT_YOURS: Responses = {404: {"description": "no such order, or an order of another device"}}


class ItemIn(BaseModel):
    sku: str = Field(pattern=SKU_PATTERN)
    quantity: int = Field(ge=1, le=1000)


class OrderIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=100)
    customer_email: str | None = Field(default=None, max_length=254)


class ItemOut(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class IntentSummary(BaseModel):
    id: uuid.UUID
    terminal_id: str
    provider_order_id: str | None
    status: str


class OrderOut(BaseModel):
    id: uuid.UUID
    status: str
    items: list[ItemOut]
    total_cents: int
    customer_email: str | None
    expires_at: dt.datetime
    created_at: dt.datetime
    paid_at: dt.datetime | None = None
    # Set when cancel (or expiry) waits for a charge still on the terminal.
    closing_status: str | None = None
    payment_intents: list[IntentSummary] | None = None


def order_out(order: store.Order, with_intents: list[intents.Intent] | None = None) -> OrderOut:
    return OrderOut(
        id=order.id,
        status=order.status,
        total_cents=order.total_cents,
        customer_email=order.customer_email,
        expires_at=order.expires_at,
        created_at=order.created_at,
        paid_at=order.paid_at,
        closing_status=order.closing_status,
        items=[
            ItemOut(
                sku=i.sku, name=i.name, quantity=i.quantity, unit_price_cents=i.unit_price_cents
            )
            for i in order.items
        ],
        payment_intents=None
        if with_intents is None
        else [
            IntentSummary(
                id=p.id,
                terminal_id=p.terminal_id,
                provider_order_id=p.provider_order_id,
                status=p.status,
            )
            for p in with_intents
        ],
    )


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    response_model_exclude_none=False,
    responses={409: {"description": "not enough stock (the detail names the sku)"}},
)
async def create_order(body: OrderIn, caller: DeviceCaller) -> OrderOut:
    """Create an order and reserve its stock until `expires_at` (KIOSK_ORDER_TTL).

    The order belongs to the calling device, which may hold KIOSK_DEVICE_MAX_OPEN_ORDERS unpaid
    orders at a time (429 with `Retry-After` beyond).
    """
    order = await store.create(
        [(i.sku, i.quantity) for i in body.items], body.customer_email, caller.device_id
    )
    return order_out(order, [])


@router.get("/orders/{order_id}", response_model=OrderOut, responses=NOT_YOURS)
async def get_order(order_id: uuid.UUID, caller: DeviceCaller) -> OrderOut:
    order = await store.get(order_id)
    caller.check_owns(order_id, order.device_id)
    return order_out(order, await intents.list_for_order(order_id))


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses={
        202: {"description": "the charge is on the terminal: canceled once it ends unpaid"},
        409: {"description": "the order is paid"},
        **NOT_YOURS,
    },
)
async def cancel_order(order_id: uuid.UUID, caller: DeviceCaller) -> JSONResponse:
    """Cancel the order and release its stock (200), or 202 while a charge is on the terminal."""
    await store.check_owner(order_id, caller.device_id)
    order = await lifecycle.close_order(order_id, "canceled")
    out = order_out(order, await intents.list_for_order(order_id))
    code = status.HTTP_200_OK if order.status == "canceled" else status.HTTP_202_ACCEPTED
    return JSONResponse(out.model_dump(mode="json"), status_code=code)
