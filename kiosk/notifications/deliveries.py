"""The delivery ledger of an order's side effects (`order_deliveries`, one row per kind):
the receipt email and the order-paid hook are delivered **at least once**.

When an order becomes paid, the same transaction writes a `pending` row per side effect (the
hook's body frozen in it) and defers its job. The job *claims* the row (`sending`, committed)
before anything leaves the kiosk and records the outcome after:

- `sent`: the receiver took it (SMTP 250 after DATA, HTTP 2xx). Final.
- `pending` again: the failure proves nothing was delivered (connection refused, the server
  answered "not now"); due again after a backoff.
- `unknown`: the failure happened after the message left (timeout while waiting for the answer,
  connection lost mid-way), or the attempt died holding the claim (found still `sending` by the
  next one). It may have been delivered, so the row is marked `maybe_delivered`; it is **sent
  again** like a `pending` one, and every such later attempt counts in `resends`.
- `failed`: refused for good (bad address, HTTP 4xx), or given up once the delivery is
  KIOSK_DELIVERY_MAX_AGE_SECONDS old or made KIOSK_DELIVERY_MAX_ATTEMPTS attempts. Listed for
  operators (GET /admin/deliveries, the dashboard's Deliveries page, `kiosk_deliveries{state}`),
  who can resend it (`resend`, audited).

So a delivery is never silently lost, and a copy is always recognisable: every attempt carries
the same email `Message-ID` or hook `Idempotency-Key` and the same hook body. Invariants: at most
one attempt of a delivery runs at a time (its jobs share the procrastinate `lock`
`delivery-<kind>-<order id>`), and an attempt only records its outcome on the claim it made
(`attempts` unchanged), so a late attempt never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from kiosk import audit, db, queue
from kiosk.audit import Operator
from kiosk.errors import Conflict, NotFound
from kiosk.notifications import event
from kiosk.settings import Settings, get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.notifications")
logger = logging.getLogger("kiosk.notifications")

RECEIPT, NOTIFY_PAID = "receipt", "notify_paid"
KINDS = (RECEIPT, NOTIFY_PAID)
# The tasks that send them (tasks/orders.py), by kind.
RECEIPT_TASK, NOTIFY_PAID_TASK = "orders.send_receipt", "orders.notify_paid"
TASKS = {RECEIPT: RECEIPT_TASK, NOTIFY_PAID: NOTIFY_PAID_TASK}
STATES = ("pending", "sending", "unknown", "sent", "failed")
# A delivery untouched this long with no job for it is picked up by the resume sweep.
RESUME_GRACE_SECONDS = 60


class DeliveryRetry(Exception):
    """Not delivered this time; the job tries again, in `retry_in` seconds once the ledger set."""

    def __init__(self, message: str, retry_in: float | None = None):
        super().__init__(message)
        self.retry_in = retry_in


class DeliveryUncertain(DeliveryRetry):
    """It may have been delivered; sent again all the same (the receiver drops the copy)."""


class DeliveryFailed(Exception):
    """Refused for good, or given up: not retried; listed for an operator."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One claimed attempt, as a sender needs it."""

    number: int  # attempts in the current window, this one included
    resend: bool  # an earlier attempt may have reached the receiver
    payload: bytes | None  # the hook's frozen body (None for a receipt)


def lock_name(kind: str, order_id: uuid.UUID | str) -> str:
    """The procrastinate lock of a delivery's jobs: never two attempts of one delivery at once."""
    return f"delivery-{kind}-{order_id}"


async def plan_paid(
    conn: psycopg.AsyncConnection,
    order_id: uuid.UUID,
    customer_email: str | None,
    paid_order: Callable[[], Awaitable[event.PaidOrder]],
) -> None:
    """In the paid transition's transaction: owe the receipt and the hook, defer their jobs.

    `paid_order` reads the order as it is now paid (on `conn`); it is called only when the hook's
    body has to be frozen.
    """
    settings = get_settings()
    kinds = []
    if customer_email and settings.smtp_host:
        kinds.append(RECEIPT)
    elif customer_email:
        logger.info("order %s: KIOSK_SMTP_HOST is not set, no receipt email", order_id)
    if settings.notify_url:
        kinds.append(NOTIFY_PAID)
    for kind in kinds:
        # The hook's body is frozen now, so that every attempt sends (and signs) the same bytes.
        body = event.payload(await paid_order()) if kind == NOTIFY_PAID else None
        params = {"order_id": order_id, "kind": kind, "payload": body}
        if await db.fetch_one(conn, QUERIES["plan_delivery"], params) is not None:
            await _defer(conn, kind, order_id)


async def _defer(conn: psycopg.AsyncConnection, kind: str, order_id: uuid.UUID) -> int | None:
    return await queue.defer(
        conn, TASKS[kind], lock=lock_name(kind, order_id), order_id=str(order_id)
    )


def backoff(attempt: int, settings: Settings) -> float:
    """Seconds before the attempt after `attempt`: the first delay, doubled each time, capped."""
    first, cap = settings.delivery_retry_backoff_seconds, settings.delivery_retry_max_delay_seconds
    return min(cap, first * 2.0 ** min(max(attempt - 1, 0), 32))


def _exhausted(row: dict[str, Any], settings: Settings) -> str | None:
    """Why a delivery owed must not be attempted again, or None."""
    if row["attempts"] >= settings.delivery_max_attempts:
        return f"gave up after {row['attempts']} attempts (KIOSK_DELIVERY_MAX_ATTEMPTS)"
    deadline = row["window_started_at"] + dt.timedelta(seconds=settings.delivery_max_age_seconds)
    if row["now"] >= deadline:
        return (
            f"gave up: owed since {row['window_started_at']:%Y-%m-%d %H:%M:%S} UTC, past "
            f"KIOSK_DELIVERY_MAX_AGE_SECONDS ({settings.delivery_max_age_seconds} s)"
        )
    return None


async def deliver(
    order_id: uuid.UUID,
    kind: str,
    send: Callable[[Attempt], Awaitable[None]],
    *,
    payload: bytes | None = None,
) -> str:
    """Run one attempt of a delivery that is owed; return its state.

    `send` raises DeliveryRetry (nothing delivered), DeliveryUncertain (maybe delivered) or
    DeliveryFailed (refused for good). A retryable failure is raised again as DeliveryRetry
    carrying the ledger's `retry_in`, or as DeliveryFailed once the delivery is given up.
    `payload`: the hook's body, stored on a row planned before bodies were frozen.
    """
    settings = get_settings()
    params = {"order_id": order_id, "kind": kind}
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["lock_delivery"], params)
        if row is None:
            return "not planned"
        state: str = row["state"]
        if state in ("sent", "failed"):
            return state
        reason = _exhausted(row, settings)
        if reason is None:
            # The row is locked above, in a state the claim takes: it always returns it.
            claimed = await db.fetch_row(
                conn, QUERIES["claim_delivery"], {**params, "payload": payload}
            )
        else:
            await conn.execute(QUERIES["give_up_delivery"], {**params, "reason": reason})
    if reason is not None:
        logger.warning("order %s: %s %s", order_id, kind, reason)
        raise DeliveryFailed(reason)
    if row["state"] != "pending":
        logger.warning(
            "order %s: %s was %s (%s); sending it again with the same key, attempt %s",
            order_id,
            kind,
            row["state"],
            claimed["last_error"],
            claimed["attempts"],
        )
    attempt = Attempt(claimed["attempts"], claimed["maybe_delivered"], claimed["payload"])
    mine = {**params, "attempt": attempt.number}
    try:
        await send(attempt)
    except DeliveryFailed as exc:
        await _record(QUERIES["refuse_delivery"], {**mine, "last_error": _describe(exc)})
        logger.warning("order %s: %s refused for good: %s", order_id, kind, exc)
        raise
    except DeliveryRetry as exc:
        outcome = await _retry_later(
            mine, exc, settings, maybe_delivered=isinstance(exc, DeliveryUncertain)
        )
        if outcome is None:
            return "superseded"
        raise outcome from exc
    except BaseException as exc:
        # A bug, or the worker stopping mid-send: it may have been delivered. Owed again; the
        # shutdown retry (or the resume sweep, after a bug) runs it with the same key.
        await asyncio.shield(_retry_later(mine, exc, settings, maybe_delivered=True))
        raise
    if await _record(QUERIES["delivered"], mine) is None:
        logger.warning(
            "order %s: %s attempt %s was delivered after a newer attempt took over",
            order_id,
            kind,
            attempt.number,
        )
        return "superseded"
    logger.info("order %s: %s sent (attempt %s)", order_id, kind, attempt.number)
    return "sent"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


async def _record(query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    async with db.transaction() as conn:
        return await db.fetch_one(conn, query, params)


async def _retry_later(
    mine: dict[str, Any], error: BaseException, settings: Settings, *, maybe_delivered: bool
) -> Exception | None:
    """Record a failed attempt; the exception for the job (None when a newer attempt took over)."""
    row = await _record(
        QUERIES["retry_delivery"],
        {
            **mine,
            "state": "unknown" if maybe_delivered else "pending",
            "maybe_delivered": maybe_delivered,
            "last_error": _describe(error),
            "delay": backoff(mine["attempt"], settings),
            "max_attempts": settings.delivery_max_attempts,
            "max_age": settings.delivery_max_age_seconds,
        },
    )
    order_id, kind = mine["order_id"], mine["kind"]
    if row is None:
        logger.warning(
            "order %s: %s attempt %s failed after a newer attempt took over: %s",
            order_id,
            kind,
            mine["attempt"],
            _describe(error),
        )
        return None
    if row["state"] == "failed":
        logger.warning("order %s: %s %s", order_id, kind, row["last_error"])
        return DeliveryFailed(row["last_error"])
    logger.warning(
        "order %s: %s attempt %s %s, again in %.0f s: %s",
        order_id,
        kind,
        mine["attempt"],
        "may have been delivered" if maybe_delivered else "not delivered",
        row["retry_in"],
        _describe(error),
    )
    return DeliveryRetry(str(error), retry_in=row["retry_in"])


# -- operators -------------------------------------------------------------------------------------


class DeliveryNotFound(NotFound):
    pass


class NotResendable(Conflict):
    pass


async def resend(conn: psycopg.AsyncConnection, order_id: uuid.UUID, kind: str) -> dict[str, Any]:
    """Owe a `failed` delivery again, in a new window, and defer its job (in the caller's
    transaction). Raises DeliveryNotFound, or NotResendable unless it is `failed`."""
    params = {"order_id": order_id, "kind": kind}
    before = await db.fetch_one(conn, QUERIES["get_delivery"], params)
    if before is None:
        raise DeliveryNotFound(f"order {order_id} has no {kind} delivery")
    row = await db.fetch_one(conn, QUERIES["resend_delivery"], params)
    if row is None:
        doing = (
            "it was delivered" if before["state"] == "sent" else "it is being retried automatically"
        )
        raise NotResendable(
            f"the {kind} of order {order_id} is {before['state']}: only a failed "
            f"delivery can be resent ({doing})"
        )
    job_id = await _defer(conn, kind, order_id)
    return {
        "order_id": order_id,
        "kind": kind,
        "state": row["state"],
        "job_id": job_id,
        "previous_attempts": before["attempts"],
        "last_error": before["last_error"],
    }


async def resend_by(
    conn: psycopg.AsyncConnection, order_id: uuid.UUID, kind: str, by: Operator
) -> dict[str, Any]:
    """`resend` on an operator's behalf, recorded in the audit log in the same transaction; raises
    DeliveryNotFound or NotResendable (nothing recorded then)."""
    result = await resend(conn, order_id, kind)
    await audit.record_by(
        conn,
        by,
        "delivery.resend",
        f"delivery:{order_id}/{kind}",
        {"job_id": result["job_id"], "previous_attempts": result["previous_attempts"]},
    )
    return result


@dataclasses.dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[dict[str, Any]]
    next_cursor: int | None


async def list_deliveries(
    conn: psycopg.AsyncConnection,
    *,
    state: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
) -> DeliveryPage:
    """Newest first: one state, or (None) every delivery not sent; keyset-paginated by id."""
    query = QUERIES["list_sent"] if state == "sent" else QUERIES["list_not_sent"]
    rows = await db.fetch_all(
        conn, query, {"state": state, "kind": kind, "before": before, "limit": limit}, prepare=False
    )
    return DeliveryPage(rows, rows[-1]["id"] if len(rows) == limit else None)


async def count_by_state(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """Deliveries not sent, every such state present (0 when none)."""
    counts = {state: 0 for state in STATES if state != "sent"}
    for row in await db.fetch_all(conn, QUERIES["count_not_sent"]):
        counts[row["state"]] = row["n"]
    return counts


async def resume_due(limit: int = 500) -> dict[str, int]:
    """The periodic sweep: defer a job for every delivery owed and due that has none (its job
    ran out of retries on a lost database, failed on a bug, or was cancelled), and give up on
    those past their maximum age or attempts. Their jobs' retries do the rest."""
    settings = get_settings()
    resumed = given_up = 0
    async with db.transaction() as conn:
        for row in await db.fetch_all(
            conn, QUERIES["due_deliveries"], {"grace": RESUME_GRACE_SECONDS, "limit": limit}
        ):
            params = {"order_id": row["order_id"], "kind": row["kind"]}
            reason = _exhausted(row, settings)
            if reason is not None:
                await conn.execute(QUERIES["give_up_delivery"], {**params, "reason": reason})
                logger.warning("order %s: %s %s", row["order_id"], row["kind"], reason)
                given_up += 1
            else:
                await _defer(conn, row["kind"], row["order_id"])
                logger.warning(
                    "order %s: %s was %s with no job for it; deferred again",
                    row["order_id"],
                    row["kind"],
                    row["state"],
                )
                resumed += 1
    return {"resumed": resumed, "given_up": given_up}
