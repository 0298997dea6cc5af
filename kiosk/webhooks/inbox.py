"""The webhook inbox: every accepted notification, stored with its processing job in one
transaction.

The body of a notification is not signed, so it is only a hint: the job re-reads the order from
Mercado Pago. Repeated deliveries (same notification id) are no-ops; bursts for one provider order
collapse into one waiting job (`queueing_lock`), and jobs of one kiosk order never run at once
(`lock`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import psycopg

from kiosk import db, queue, tracing
from kiosk.settings import get_settings
from kiosk.sql import load_queries
from kiosk.validators import ID_PATTERN
from kiosk.webhooks.batcher import Batcher

QUERIES = load_queries("kiosk.webhooks")
PROCESS_TASK = "payments.process_notification"
logger = logging.getLogger("kiosk.webhooks")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Malformed(ValueError):
    """The body is not a notification we understand (answered 400, nothing stored)."""


@dataclass(frozen=True)
class Notification:
    notification_id: str
    type: str
    action: str | None
    resource_id: str | None
    request_id: str | None
    payload: dict[str, Any]
    body: str  # the JSON text as received, stored as the row's payload (jsonb)


@dataclass(frozen=True)
class Accepted:
    inbox_id: int | None
    state: str  # received (job deferred or collapsed), ignored, duplicate
    job_id: int | None = None


DUPLICATE = Accepted(None, "duplicate")


@overload
def _text(value: object, name: str, limit: int, required: Literal[True]) -> str: ...
@overload
def _text(value: object, name: str, limit: int, required: bool = False) -> str | None: ...
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
    """A notification from its raw body and query string; Malformed when it is not one.

    Anything PostgreSQL would refuse to store (a NUL character, a lone UTF-16 surrogate, text that
    is not UTF-8, `NaN` or `Infinity`, a number beyond jsonb's range) is refused here, so a stored
    batch never fails because of one bad request.
    """
    try:
        text = body.decode("utf-8")
        payload = _DECODER.decode(text)
    except Malformed:
        raise
    except RecursionError:  # nested deeper than Python's recursion limit, within the size cap
        raise Malformed("body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise Malformed("body is not JSON") from None
    if "\\u" in text and not _storable(payload):
        raise Malformed("body holds a NUL character or a lone surrogate")
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
    if any(value and not _storable(value) for value in (kind, resource_id, request_id)):
        raise Malformed("type, data.id or x-request-id holds a NUL character or a lone surrogate")
    return Notification(notification_id, kind, action, resource_id, request_id, payload, text)


def _constant(name: str) -> float:
    """`NaN`, `Infinity`, `-Infinity`: Python's json takes them, JSON and jsonb do not."""
    raise Malformed(f"body holds {name}, which is not JSON")


def _number(literal: str) -> float:
    """A JSON number with a fraction or exponent, refused beyond a double's range (I-JSON,
    RFC 7493) or with an exponent below -1000: jsonb cannot hold 1e200000 or 1e-20000."""
    value = float(literal)
    exponent = literal.lower().partition("e")[2]
    if math.isinf(value) or len(literal) > 1000 or (exponent and int(exponent) < -1000):
        raise Malformed("body holds a number beyond the range of a double")
    return value


# One decoder for every request (json.loads with hooks would build one per call).
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_number)


def _storable(value: object) -> bool:
    """No NUL and no lone surrogate in any string (keys included) of a parsed JSON value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or _SURROGATE.search(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


async def accept(notification: Notification) -> Accepted:
    """Store the notification and defer its processing job; answer once both are committed.

    Concurrent notifications of this process share one transaction (`batcher`); the answer comes
    only after that transaction committed, and a database error reaches every caller in it.
    """
    if tracing.ENABLED:
        from kiosk.tracing import webhooks as traced

        return await traced.accepted("/webhooks/mercadopago", notification, batcher().submit)
    return await batcher().submit(notification)


async def store(notifications: Sequence[Notification]) -> list[Accepted | Exception]:
    """Store notifications with their jobs in one transaction: one result each, in order.

    A notification id seen before (in the table or earlier in this batch) is a duplicate and does
    nothing. An order notification gets its job (one no intent knows yet too: the job matches it
    by its external_reference, or marks it `ignored`), unless a job for it is already waiting
    (`queueing_lock`, also within the batch): then the row is kept and the waiting job covers it.
    Should the batch fail for a reason other than the database being unreachable (a row the
    database refuses), each notification is stored alone, so one bad row cannot sink the others.
    """
    if tracing.ENABLED:
        from kiosk.tracing import webhooks as traced

        async with traced.batch(notifications):
            return await _store_each(notifications)
    return await _store_each(notifications)


async def _store_each(notifications: Sequence[Notification]) -> list[Accepted | Exception]:
    try:
        return list(await _store(notifications))
    except psycopg.OperationalError:
        raise
    except psycopg.Error:
        if len(notifications) == 1:
            raise
        logger.warning(
            "webhook batch of %d failed; storing one by one", len(notifications), exc_info=True
        )
    results: list[Accepted | Exception] = []
    for notification in notifications:
        try:
            results.extend(await _store([notification]))
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            results.append(exc)
    return results


async def _store(notifications: Sequence[Notification]) -> list[Accepted]:
    first: dict[str, Notification] = {}
    for notification in notifications:
        first.setdefault(notification.notification_id, notification)
    # Sorted, so that two concurrent batches lock the same ids and queueing locks in one order.
    unique = sorted(first.values(), key=lambda n: n.notification_id)
    job = queue.job_fields(PROCESS_TASK)
    # One statement, its own transaction: the rows and their jobs commit together, in one round
    # trip (kiosk_store_notifications_v1, alembic 0023).
    # With tracing on, the jobs' trace rows join the same transaction (one more statement).
    connection = db.transaction() if tracing.ENABLED else db.autocommit()
    async with connection as conn:
        cursor = await conn.execute(
            QUERIES["store_notifications"],
            {
                "notification_ids": [n.notification_id for n in unique],
                "types": [n.type for n in unique],
                "actions": [n.action for n in unique],
                "resource_ids": [n.resource_id for n in unique],
                "request_ids": [n.request_id for n in unique],
                "payloads": [n.body for n in unique],
                "queue_name": job.queue,
                "task_name": job.task_name,
                "priority": job.priority,
            },
        )
        rows = await cursor.fetchall()
        if tracing.ENABLED:  # each job continues the trace of the request that caused it
            from kiosk.tracing import jobs as traced_jobs
            from kiosk.tracing import webhooks as traced

            made = [(row[4], first[row[1]]) for row in rows if row[4] is not None]
            await traced_jobs.save(
                conn, [job_id for job_id, _ in made], traced.carriers([n for _, n in made])
            )
    # A row's job_id: the job it deferred; a later row of the same provider order in this batch,
    # or of one whose job was already waiting, is covered by that job and names none.
    outcome = {
        notification_id: Accepted(inbox_id, state, job_id)
        for inbox_id, notification_id, _, state, job_id in rows
    }
    logger.debug(
        "webhook batch: %d notifications, %d stored, %d jobs",
        len(notifications),
        len(rows),
        sum(1 for row in rows if row[4] is not None),
    )
    # Ids stored by an earlier transaction, and later copies within this batch: duplicates.
    results = []
    for notification in notifications:
        accepted = outcome.get(notification.notification_id)
        if accepted is None or first[notification.notification_id] is not notification:
            accepted = DUPLICATE
        results.append(accepted)
    return results


_batcher: Batcher[Notification, Accepted] | None = None


def batcher() -> Batcher[Notification, Accepted]:
    """This process's batcher, sized by the settings on first use (not at import)."""
    global _batcher
    if _batcher is None:
        settings = get_settings()
        _batcher = Batcher(
            store,
            max_items=settings.webhook_batch_max,
            linger=settings.webhook_batch_wait_ms / 1000,
            max_in_flight=settings.webhook_batch_concurrency,
        )
    return _batcher


async def last_received(conn: psycopg.AsyncConnection, resource_id: str) -> int | None:
    row = await db.fetch_one(conn, QUERIES["last_received"], {"resource_id": resource_id})
    return row["id"] if row else None


async def finish(
    conn: psycopg.AsyncConnection, resource_id: str, up_to: int | None, state: str
) -> None:
    """Mark the provider order's notifications up to `up_to` as processed or ignored."""
    if up_to is not None:
        await conn.execute(
            QUERIES["finish_received"], {"resource_id": resource_id, "up_to": up_to, "state": state}
        )
