"""Payments needing an operator: charges whose outcome is still unknown after a few minutes, and
refunds that failed or are stuck. Listed by `GET /admin/payments/attention` and the dashboard's
Attention page, with the two actions an operator needs: resolve now (re-send the create's
idempotency key) and retry a refund (the same refund key). Each action is audited in its own
transaction, with its job deferred there too.
"""

from __future__ import annotations

import uuid
from typing import Any

from kiosk import audit, db
from kiosk.errors import Conflict, NotFound
from kiosk.payments import intents, refunds
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.payments")
LIMIT = 500


async def list_attention(limit: int = LIMIT) -> list[dict[str, Any]]:
    """Unresolved charges (and starts that never recorded an answer) older than
    KIOSK_PAYMENT_ATTENTION_AFTER_SECONDS, failed refunds and refunds pending that long; oldest
    first. `kind` is `unresolved` or `refund`."""
    params = {"age": get_settings().payment_attention_after_seconds, "limit": limit}
    async with db.transaction() as conn:
        return await db.fetch_all(conn, QUERIES["attention"], params)


async def resolve_now(intent_id: uuid.UUID, by: audit.Operator) -> dict[str, Any]:
    """Defer the resolution of an unresolved charge now (a start that never recorded its answer
    becomes unresolved first, once past the start's deadline). NotFound, or Conflict when there
    is nothing to resolve."""
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["get_intent"], {"id": intent_id})
        if row is None:
            raise NotFound(f"payment intent {intent_id} not found")
        await intents.lock_order(conn, row["order_id"])
        if row["status"] == "created" and row["provider_order_id"] is None:
            row = await db.fetch_one(
                conn,
                QUERIES["unresolve_orphan"],
                {"id": intent_id, "age": intents.start_grace_seconds()},
            )
            if row is None:
                raise Conflict(
                    f"payment intent {intent_id} is still being started; try again in a minute"
                )
        if row["status"] != "unresolved":
            raise Conflict(f"payment intent {intent_id} is {row['status']}: nothing to resolve")
        job_id = await intents.defer_resolution(conn, row)
        await audit.record_by(
            conn,
            by,
            "payment.resolve",
            f"payment_intent:{intent_id}",
            {"order_id": str(row["order_id"]), "job_id": job_id},
        )
    return {
        "id": str(intent_id),
        "status": row["status"],
        "job_id": job_id,
        "result": "deferred" if job_id else "already waiting",
    }


async def retry_refund(intent_id: uuid.UUID, by: audit.Operator) -> dict[str, Any]:
    """Ask Mercado Pago again for a failed refund, with the same idempotency key."""
    row = await refunds.retry(intent_id, by)
    return {"id": str(intent_id), "refund_status": row["refund_status"], "result": "deferred"}
