"""The webhook inbox: every accepted notification, stored with its processing job in one transaction.

The body of a notification is not signed, so it is only a hint: the job re-reads the order from
Mercado Pago. Repeated deliveries (same notification id) are no-ops; bursts for one provider order
collapse into one waiting job (`queueing_lock`), and jobs of one kiosk order never run at once
(`lock`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from kiosk import db, queue
from kiosk.payments import intents
from kiosk.payments.mercadopago import ID_PATTERN
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.webhooks")
PROCESS_TASK = "payments.process_notification"


class Malformed(ValueError):
    """The body is not a notification we understand (answered 400, nothing stored)."""


@dataclass(frozen=True)
class Notification:
    notification_id: str
    type: str
    action: str | None
    resource_id: str | None
    request_id: str | None
    payload: dict


@dataclass(frozen=True)
class Accepted:
    inbox_id: int | None
    state: str  # received (job deferred or collapsed), ignored, duplicate
    job_id: int | None = None


def _text(value: object, name: str, limit: int, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise Malformed(f"{name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Malformed(f"{name} must be a string or a number")
    text = str(value)
    if len(text) > limit:
        raise Malformed(f"{name} is longer than {limit} characters")
    return text


def parse(
    body: bytes, query_data_id: str | None, query_type: str | None, request_id: str | None
) -> Notification:
    """A notification from its raw body and query string; Malformed when it is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("body is not JSON") from None
    except RecursionError:  # nested deeper than Python's recursion limit, within the size cap
        raise Malformed("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise Malformed("body must be a JSON object")
    notification_id = _text(payload.get("id"), "id", 100, required=True)
    kind = _text(payload.get("type") or query_type, "type", 50, required=True)
    action = _text(payload.get("action"), "action", 100)
    data = payload.get("data")
    if data is not None and not isinstance(data, dict):
        raise Malformed("data must be an object")
    body_id = _text((data or {}).get("id"), "data.id", 64)
    if query_data_id and body_id and body_id != query_data_id:
        raise Malformed("data.id in the body differs from data.id in the query string")
    resource_id = query_data_id or body_id
    if kind == "order" and not (resource_id and ID_PATTERN.match(resource_id)):
        raise Malformed("an order notification needs a valid data.id")
    assert notification_id is not None and kind is not None
    return Notification(notification_id, kind, action, resource_id, request_id, payload)


async def accept(notification: Notification) -> Accepted:
    """Store the notification and defer its processing job, in one transaction."""
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["insert_notification"], {
            "notification_id": notification.notification_id, "type": notification.type,
            "action": notification.action, "resource_id": notification.resource_id,
            "request_id": notification.request_id, "payload": Jsonb(notification.payload),
            "state": "received",
        })
        if row is None:
            return Accepted(None, "duplicate")
        inbox_id = row["id"]
        intent = None
        if notification.type == "order" and notification.resource_id:
            intent = await intents.find_by_provider_order(conn, notification.resource_id)
        if intent is None:
            await _outcome(conn, inbox_id, "ignored", None)
            return Accepted(inbox_id, "ignored")
        job_id = await queue.defer(
            conn,
            PROCESS_TASK,
            queueing_lock=f"mp-order-{notification.resource_id}",
            lock=f"order-{intent.order_id}",
            provider_order_id=notification.resource_id,
        )
        await _outcome(conn, inbox_id, "received", job_id)
        return Accepted(inbox_id, "received", job_id)


async def _outcome(conn: psycopg.AsyncConnection, inbox_id: int, state: str, job_id: int | None) -> None:
    await conn.execute(
        QUERIES["set_notification_outcome"], {"id": inbox_id, "state": state, "job_id": job_id}
    )


async def last_received(conn: psycopg.AsyncConnection, resource_id: str) -> int | None:
    row = await db.fetch_one(conn, QUERIES["last_received"], {"resource_id": resource_id})
    return row["id"] if row else None


async def finish(conn: psycopg.AsyncConnection, resource_id: str, up_to: int | None, state: str) -> None:
    """Mark the provider order's notifications up to `up_to` as processed or ignored."""
    if up_to is not None:
        await conn.execute(
            QUERIES["finish_received"], {"resource_id": resource_id, "up_to": up_to, "state": state}
        )
