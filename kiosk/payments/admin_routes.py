"""Admin JSON API of payments needing attention (kiosk/payments/attention.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired
from kiosk.payments import attention

router = APIRouter(
    prefix="/admin/payments", tags=["admin"], dependencies=[AdminRequired], responses=UNAUTHORIZED
)


@router.get(
    "/attention",
    summary="Payments needing an operator: unresolved charges older than "
    "KIOSK_PAYMENT_ATTENTION_AFTER_SECONDS, failed or stuck refunds",
)
async def get_attention() -> list[attention.Item]:
    return await attention.list_attention()


@router.post(
    "/intents/{intent_id}/resolve",
    summary="Re-send an unresolved charge's create (same idempotency key) now; audited",
    responses={404: {}, 409: {"description": "nothing to resolve"}},
)
async def resolve_intent(intent_id: uuid.UUID, by: Actor) -> attention.Resolution:
    return await attention.resolve_now(intent_id, by)


@router.post(
    "/intents/{intent_id}/refund",
    summary="Retry a failed refund (same idempotency key); audited",
    responses={404: {}, 409: {"description": "no failed refund"}},
)
async def retry_refund(intent_id: uuid.UUID, by: Actor) -> attention.RefundRetry:
    return await attention.retry_refund(intent_id, by)
