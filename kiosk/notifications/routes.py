"""Admin API of the delivery ledger: `/admin/deliveries...`, bearer token required.

The operators' list of receipts and order-paid hooks not delivered (being retried, or given up)
and the resend action, audited (docs/payments.md, "Receipt and notify hook").
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from kiosk import db
from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired
from kiosk.notifications import deliveries

router = APIRouter(
    prefix="/admin/deliveries", tags=["admin"], dependencies=[AdminRequired], responses=UNAUTHORIZED
)

State = Literal["pending", "sending", "unknown", "sent", "failed"]
Kind = Literal["receipt", "notify_paid"]
MAX_PAGE = 500


@router.get("", summary="Receipts and order-paid hooks by state, newest first, keyset-paginated")
async def get_deliveries(
    state: Annotated[
        State | None,
        Query(
            description=(
                "one state; omitted: every delivery not sent "
                "(`failed`: given up, needs an operator)"
            ),
        ),
    ] = None,
    kind: Kind | None = None,
    cursor: Annotated[
        int | None, Query(ge=1, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    async with db.transaction() as conn:
        page = await deliveries.list_deliveries(
            conn, state=state, kind=kind, before=cursor, limit=limit
        )
    return dataclasses.asdict(page)


@router.post(
    "/{order_id}/{kind}/resend",
    status_code=202,
    summary=(
        "Send a given-up (failed) receipt or hook again, "
        "with the same Message-ID or Idempotency-Key"
    ),
    responses={
        404: {"description": "no such delivery"},
        409: {"description": "the delivery is not failed (sent, or being retried)"},
    },
)
async def resend_delivery(order_id: uuid.UUID, kind: Kind, by: Actor) -> dict[str, Any]:
    async with db.transaction() as conn:
        return await deliveries.resend_by(conn, order_id, kind, by)
