"""The at-most-once ledger of an order's side effects (`order_deliveries`, one row per kind).

When an order becomes paid, the same transaction writes a `pending` row per side effect and
defers its job. The job *claims* the row (`sending`, committed) before anything leaves the kiosk
and records the outcome after:

- `sent`: delivered.
- `pending` again: the failure proves nothing was delivered (connection refused, the server
  answered "no"); the job is retried with backoff.
- `failed`: refused for good (bad address, 4xx); not retried.
- `unknown`: the failure happened after the message left (timeout while waiting for the
  answer, connection lost mid-way), or an attempt died while holding the claim. It may have been
  delivered, so it is **not** sent again.

So a side effect happens at most once per order however often its job runs; the email's stable
Message-ID and the hook's Idempotency-Key let the receiving side drop copies too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import psycopg

from kiosk import db, queue
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.notifications")
logger = logging.getLogger("kiosk.notifications")

RECEIPT, NOTIFY_PAID = "receipt", "notify_paid"
TASKS = {RECEIPT: "orders.send_receipt", NOTIFY_PAID: "orders.notify_paid"}


class DeliveryRetry(Exception):
    """Nothing was delivered; the job may try again."""


class DeliveryFailed(Exception):
    """Refused for good; not retried."""


class DeliveryUncertain(Exception):
    """It may have been delivered; never sent again."""


async def plan_paid(
    conn: psycopg.AsyncConnection, order_id: uuid.UUID, customer_email: str | None
) -> None:
    """In the paid transition's transaction: owe the receipt and the hook, defer their jobs."""
    settings = get_settings()
    kinds = []
    if customer_email and settings.smtp_host:
        kinds.append(RECEIPT)
    elif customer_email:
        logger.info("order %s: KIOSK_SMTP_HOST is not set, no receipt email", order_id)
    if settings.notify_url:
        kinds.append(NOTIFY_PAID)
    for kind in kinds:
        params = {"order_id": order_id, "kind": kind}
        if await db.fetch_one(conn, QUERIES["plan_delivery"], params) is not None:
            await queue.defer(conn, TASKS[kind], order_id=str(order_id))


async def deliver_once(order_id: uuid.UUID, kind: str, send: Callable[[], Awaitable[None]]) -> str:
    """Run `send` unless this delivery already ran; return the delivery's state."""
    params = {"order_id": order_id, "kind": kind}
    async with db.transaction() as conn:
        if await db.fetch_one(conn, QUERIES["claim_delivery"], params) is None:
            row = await db.fetch_one(conn, QUERIES["get_delivery"], params)
            if row is None:
                return "not planned"
            if row["state"] == "sending":
                await conn.execute(QUERIES["abandon_delivery"], params)
                logger.warning("order %s: %s was claimed by an attempt that never finished; "
                               "not sent again", order_id, kind)
                return "unknown"
            return row["state"]
    try:
        await send()
    except DeliveryRetry as exc:
        await _finish(params, "pending", exc)
        raise
    except DeliveryFailed as exc:
        await _finish(params, "failed", exc)
        raise
    except BaseException as exc:
        # Uncertain, a bug, or the worker stopping mid-send: maybe delivered, so never again.
        await asyncio.shield(_finish(params, "unknown", exc))
        raise
    await _finish(params, "sent", None)
    logger.info("order %s: %s sent", order_id, kind)
    return "sent"


async def _finish(params: dict, state: str, error: BaseException | None) -> None:
    last_error = f"{type(error).__name__}: {error}"[:500] if error else None
    async with db.transaction() as conn:
        await conn.execute(
            QUERIES["finish_delivery"], {**params, "state": state, "last_error": last_error}
        )
    if error:
        logger.warning("order %s: %s %s: %s", params["order_id"], params["kind"], state, last_error)
