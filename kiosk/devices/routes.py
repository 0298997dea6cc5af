"""Admin API of kiosk devices: `/admin/devices...`, bearer admin token required.

The token is in the answer of `POST /admin/devices` only; it is stored as a SHA-256 hash.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired
from kiosk.devices import store

router = APIRouter(
    prefix="/admin/devices", tags=["devices"], dependencies=[AdminRequired], responses=UNAUTHORIZED
)
MAX_PAGE = 200


class DeviceIn(BaseModel):
    name: str = Field(min_length=1, max_length=store.MAX_NAME)
    terminal_ids: list[str] = Field(
        min_length=1,
        max_length=store.MAX_TERMINALS,
        description="card terminals this device may charge on",
    )


class DeviceOut(BaseModel):
    id: int
    name: str
    terminal_ids: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    open_orders: int = Field(description="unpaid orders still holding stock")


class NewDeviceOut(BaseModel):
    id: int
    name: str
    terminal_ids: list[str]
    token: str = Field(description="the device's bearer token: shown in this answer only")
    created_at: dt.datetime


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=NewDeviceOut,
    summary="Create a device bound to card terminals; its token is in this answer only",
    responses={
        409: {"description": "an active device has that name"},
        422: {"description": "bad name or terminal ids"},
    },
)
async def create_device(body: DeviceIn, by: Actor) -> NewDeviceOut:
    """Audited (`device.create`, without the token)."""
    new = await store.create(body.name, body.terminal_ids, by)
    d = new.device
    return NewDeviceOut(
        id=d.id,
        name=d.name,
        terminal_ids=list(d.terminal_ids),
        token=new.token,
        created_at=d.created_at,
    )


class DevicesPage(BaseModel):
    devices: list[DeviceOut]
    next_cursor: int | None = Field(description="`cursor` of the next page; null on the last one")


@router.get("", response_model=DevicesPage, summary="Devices, revoked ones included, newest first")
async def list_devices(
    cursor: Annotated[
        int | None, Query(ge=1, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> DevicesPage:
    page = await store.list_page(cursor=cursor, limit=limit)
    return DevicesPage(
        devices=[
            DeviceOut(
                id=d.id,
                name=d.name,
                terminal_ids=list(d.terminal_ids),
                created_at=d.created_at,
                revoked_at=d.revoked_at,
                open_orders=d.open_orders or 0,
            )
            for d in page
        ],
        next_cursor=page[-1].id if len(page) == limit else None,
    )


@router.delete(
    "/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a device: its token is refused from now on",
    responses={404: {"description": "no such device"}},
)
async def revoke_device(device_id: int, by: Actor) -> Response:
    """Audited (`device.revoke`) the first time; revoking again answers 204 and changes nothing.
    The device's orders stay as they are (an operator may cancel them)."""
    await store.revoke(device_id, by)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
