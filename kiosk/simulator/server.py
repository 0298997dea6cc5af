"""A Mercado Pago Point simulator: the Orders API subset of the provider doc, plus card terminals.

API (as the doc says, bearer token checked when MP_ACCESS_TOKEN is set):
  POST /v1/orders                 X-Idempotency-Key required; same key -> the first order again;
                                  409 when the terminal already has a queued order
  GET  /v1/orders/{id}            200 or 404
  POST /v1/orders/{id}/cancel     only `created` -> 200 canceled; anything else 409
  POST /v1/orders/{id}/refund     only `processed` -> 200 refunded; anything else 409; 404 unknown;
                                  the same key answers as its first call did
Orders left `created`/`at_terminal` past their expiration_time become `expired`.

Control (for people and tests; every status change sends a webhook signed with MP_WEBHOOK_SECRET
to the webhook URL, in order, retried 3 times):
  POST /_sim/terminals/{terminal}/take|approve|decline|cancel   the customer at the terminal
  POST /_sim/orders/{id}/status {"status"}                      any allowed lifecycle step
  POST /_sim/faults {"fail_next", "fail_status", "delay_next", "delay_seconds", "method"}
  POST /_sim/chaos {"seed", "fail_after", "late", "late_seconds", "drop", "webhook_delay",
                    "webhook_duplicate", "method"}    random faults of every API call and webhook
  POST /_sim/config {"webhooks": bool, "webhook_url"}
  GET  /_sim/orders, /_sim/requests, /_sim/webhooks              what happened
  POST /_sim/reset
  GET  /                                                         a page with tap buttons
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kiosk.validators import MAX_EXPIRATION, MIN_EXPIRATION, parse_duration
from kiosk.webhooks import signature

logger = logging.getLogger("kiosk.simulator")

OPEN = ("created", "at_terminal")
# Allowed lifecycle steps (provider doc, "Order status lifecycle").
STEPS = {
    "created": {"at_terminal", "canceled", "expired"},
    "at_terminal": {"processed", "failed", "canceled", "expired", "action_required"},
    "processed": {"refunded"},
}
PAYMENT_STATUS = {
    "created": ("created", "ready_to_process"),
    "at_terminal": ("at_terminal", "at_terminal"),
    "processed": ("processed", "accredited"),
    "failed": ("failed", "rejected"),
    "canceled": ("canceled", "canceled"),
    "expired": ("expired", "expired"),
    "action_required": ("action_required", "action_required"),
    "refunded": ("refunded", "refunded"),
}
REFERENCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AMOUNT = re.compile(r"^\d{1,9}\.\d{2}$")
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(26))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SimOrder:
    id: str
    external_reference: str
    terminal_id: str
    amount: str
    description: str | None
    expires_at: float
    payment_id: str = field(default_factory=lambda: _new_id("PAY"))
    status: str = "created"
    created_date: str = field(default_factory=_now)
    last_updated_date: str = field(default_factory=_now)
    cancel_keys: set[str] = field(default_factory=set)
    # Refund idempotency key -> (HTTP status, body) of its first answer.
    refund_answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    refunds: int = 0  # refunds Mercado Pago made (at most one: only `processed` can be refunded)

    def json(self) -> dict[str, Any]:
        payment_status, detail = PAYMENT_STATUS[self.status]
        return {
            "id": self.id,
            "type": "point",
            "external_reference": self.external_reference,
            "description": self.description,
            "status": self.status,
            "status_detail": detail,
            "created_date": self.created_date,
            "last_updated_date": self.last_updated_date,
            "transactions": {
                "payments": [
                    {
                        "id": self.payment_id,
                        "amount": self.amount,
                        "status": payment_status,
                        "status_detail": detail,
                    }
                ]
            },
            "config": {
                "point": {"terminal_id": self.terminal_id, "print_on_terminal": "no_ticket"}
            },
        }

    def record(self) -> dict[str, Any]:
        """The simulator's own record of the order (`GET /_sim/orders`): the API shape plus what
        only Mercado Pago knows, e.g. whether money was taken and how often it was refunded."""
        return {
            **self.json(),
            "refunds": self.refunds,
            "took_money": self.status in ("processed", "refunded"),
        }


@dataclass
class Faults:
    fail_next: int = 0
    fail_status: int = 500
    delay_next: int = 0
    delay_seconds: float = 0.0
    method: str | None = None  # only requests with this method, when set


@dataclass
class Chaos:
    """Random faults, each drawn per API call (after the work is done, so the kiosk cannot tell
    them from a lost answer) or per webhook. Probabilities between 0 and 1."""

    seed: int | None = None
    fail_after: float = 0.0  # do the work, then answer 500
    late: float = 0.0  # do the work, answer `late_seconds` later
    late_seconds: float = 0.0
    drop: float = 0.0  # do the work, then drop the connection mid-answer
    webhook_delay: float = 0.0  # each notification waits up to this many seconds: out of order
    webhook_duplicate: float = 0.0  # a notification is delivered twice (same id)
    method: str | None = None  # API faults only for requests with this method, when set
    rng: random.Random = field(default_factory=random.Random, repr=False)
    counts: dict[str, int] = field(default_factory=dict)

    def draw(self, kind: str, probability: float) -> bool:
        hit = probability > 0 and self.rng.random() < probability
        if hit:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        return hit

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "fail_after": self.fail_after,
            "late": self.late,
            "late_seconds": self.late_seconds,
            "drop": self.drop,
            "webhook_delay": self.webhook_delay,
            "webhook_duplicate": self.webhook_duplicate,
            "method": self.method,
            "counts": dict(self.counts),
        }


class DroppedResponse(Response):
    """Starts the answer and drops the connection before its end: a client sees the connection
    lost after its request was sent (and done)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
        # Returning without completing the response: the server closes the connection.


class Simulator:
    def __init__(self, webhook_url: str | None, webhook_secret: str, access_token: str | None):
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.access_token = access_token
        self.reset()
        self._outbox: asyncio.Queue[tuple[SimOrder, str] | None] = asyncio.Queue()

    def reset(self) -> None:
        self.orders: dict[str, SimOrder] = {}
        self.by_key: dict[str, str] = {}
        self.faults = Faults()
        self.chaos = Chaos()
        self.webhooks_enabled = True
        self.requests: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def open_on(self, terminal_id: str) -> SimOrder | None:
        return next(
            (o for o in self.orders.values() if o.terminal_id == terminal_id and o.status in OPEN),
            None,
        )

    def move(self, order: SimOrder, status: str) -> None:
        if status not in STEPS.get(order.status, set()):
            raise ValueError(f"order {order.id} is {order.status}; it cannot become {status}")
        order.status = status
        order.last_updated_date = _now()
        logger.info("order %s on %s: %s", order.id, order.terminal_id, status)
        if self.webhooks_enabled and self.webhook_url:
            self._outbox.put_nowait((order, status))

    def expire_due(self) -> None:
        now = time.monotonic()
        for order in list(self.orders.values()):
            if order.status in OPEN and order.expires_at <= now:
                self.move(order, "expired")

    # -- webhooks -------------------------------------------------------------------------------

    async def send_webhooks(self) -> None:
        """Deliver notifications one at a time, in the order the changes happened; under chaos,
        each after its own random delay (so out of order), some twice."""
        pending: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=22) as client:
            while (change := await self._outbox.get()) is not None:
                chaos = self.chaos
                if not (chaos.webhook_delay or chaos.webhook_duplicate):
                    await self._deliver(client, *change)
                    continue
                notification_id = secrets.randbelow(9 * 10**11) + 10**11
                copies = 2 if chaos.draw("webhook_duplicate", chaos.webhook_duplicate) else 1
                for _ in range(copies):
                    delay = chaos.rng.uniform(0, chaos.webhook_delay)
                    task = asyncio.create_task(self._later(client, delay, change, notification_id))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=30)

    async def _later(
        self,
        client: httpx.AsyncClient,
        delay: float,
        change: tuple[SimOrder, str],
        notification_id: int,
    ) -> None:
        await asyncio.sleep(delay)
        await self._deliver(client, *change, notification_id=notification_id)

    async def _deliver(
        self,
        client: httpx.AsyncClient,
        order: SimOrder,
        status: str,
        notification_id: int | None = None,
    ) -> None:
        notification_id = notification_id or secrets.randbelow(9 * 10**11) + 10**11
        request_id = str(uuid.uuid4())
        body = {
            "id": notification_id,
            "type": "order",
            "action": f"order.{status}",
            "api_version": "v1",
            "application_id": "2836150016842090",
            "date_created": _now(),
            "live_mode": False,
            "user_id": "1243567810",
            "data": {"id": order.id, "status": status},
        }
        headers = {
            "x-signature": signature.header(self.webhook_secret, order.id, request_id),
            "x-request-id": request_id,
        }
        record: dict[str, Any] = {
            "notification_id": notification_id,
            "order_id": order.id,
            "action": body["action"],
            "answers": [],
        }
        self.webhooks.append(record)
        for attempt in range(3):
            try:
                response = await client.post(
                    self.webhook_url or "",
                    params={"data.id": order.id, "type": "order"},
                    json=body,
                    headers=headers,
                )
                record["answers"].append(response.status_code)
                if response.status_code in (200, 201):
                    return
            except httpx.HTTPError as exc:
                record["answers"].append(type(exc).__name__)
            await asyncio.sleep(1 + attempt)
        logger.warning(
            "webhook %s for %s not acknowledged: %s", notification_id, order.id, record["answers"]
        )

    async def stop(self) -> None:
        self._outbox.put_nowait(None)


# -- HTTP -----------------------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "status": status,
            "error": "simulated" if status >= 500 else "bad_request",
            "message": message,
        },
        status_code=status,
    )


def create_app(sim: Simulator) -> Starlette:
    async def api_layer(request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Auth, injected faults and the request log, for the /v1 API only."""
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        faults = sim.faults
        applies = faults.method is None or faults.method.upper() == request.method
        chaos = sim.chaos
        fault = None
        if (
            sim.access_token
            and request.headers.get("authorization") != f"Bearer {sim.access_token}"
        ):
            response: Response = _error(401, "invalid access token")
        elif applies and faults.fail_next > 0:
            faults.fail_next -= 1
            response = _error(faults.fail_status, "simulated failure")
        else:
            response = await call_next(request)
            # Chaos strikes after the work is done: the order exists, the answer is lost.
            if chaos.method is not None and chaos.method.upper() != request.method:
                pass
            elif chaos.draw("fail_after", chaos.fail_after):
                fault, response = "fail_after", _error(500, "simulated failure after the work")
            elif chaos.draw("drop", chaos.drop):
                fault = "drop"
            elif chaos.draw("late", chaos.late):
                fault = "late"
        sim.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "idempotency_key": request.headers.get("x-idempotency-key"),
                "status": response.status_code,
                "fault": fault,
            }
        )
        if applies and faults.delay_next > 0:
            # The work is done, the answer is late: what a client timeout cannot tell apart.
            faults.delay_next -= 1
            await asyncio.sleep(faults.delay_seconds)
        if fault == "late":
            await asyncio.sleep(chaos.late_seconds)
        if fault == "drop":
            return DroppedResponse()
        return response

    async def create_order(request: Request) -> Response:
        key = request.headers.get("x-idempotency-key")
        if not key:
            return _error(400, "X-Idempotency-Key header is required")
        if key in sim.by_key:
            return JSONResponse(sim.orders[sim.by_key[key]].json(), status_code=201)
        try:
            body = await request.json()
            order = _parse_order(body, sim)
        except ValueError as exc:
            return _error(400, str(exc))
        if sim.open_on(order.terminal_id):
            return _error(409, f"terminal {order.terminal_id} already has a queued order")
        sim.orders[order.id] = order
        sim.by_key[key] = order.id
        logger.info("order %s created on %s for %s", order.id, order.terminal_id, order.amount)
        return JSONResponse(order.json(), status_code=201)

    async def get_order(request: Request) -> Response:
        order = sim.orders.get(request.path_params["order_id"])
        if order is None:
            return _error(404, "order not found")
        return JSONResponse(order.json())

    async def cancel_order(request: Request) -> Response:
        key = request.headers.get("x-idempotency-key")
        if not key:
            return _error(400, "X-Idempotency-Key header is required")
        order = sim.orders.get(request.path_params["order_id"])
        if order is None:
            return _error(404, "order not found")
        if key in order.cancel_keys:
            return JSONResponse(order.json())
        if order.status != "created":
            return _error(409, f"order is {order.status}; only a created order can be canceled")
        sim.move(order, "canceled")
        order.cancel_keys.add(key)
        return JSONResponse(order.json())

    async def refund_order(request: Request) -> Response:
        key = request.headers.get("x-idempotency-key")
        if not key:
            return _error(400, "X-Idempotency-Key header is required")
        order = sim.orders.get(request.path_params["order_id"])
        if order is None:
            return _error(404, "order not found")
        if key in order.refund_answers:
            code, body = order.refund_answers[key]
            return JSONResponse(body, status_code=code)
        if order.status != "processed":
            response = _error(
                409, f"order is {order.status}; only a processed order can be refunded"
            )
            order.refund_answers[key] = (409, json.loads(bytes(response.body)))
            return response
        sim.move(order, "refunded")
        order.refunds += 1
        order.refund_answers[key] = (200, order.json())
        return JSONResponse(order.json())

    # -- control ------------------------------------------------------------------------------

    async def terminal_action(request: Request) -> Response:
        terminal_id, action = request.path_params["terminal_id"], request.path_params["action"]
        order = sim.open_on(terminal_id)
        if order is None:
            return _error(404, f"no charge waiting on terminal {terminal_id}")
        final = {"approve": "processed", "decline": "failed", "cancel": "canceled", "take": None}
        if action not in final:
            return _error(404, f"unknown action {action}")
        if order.status == "created" and action != "cancel":
            sim.move(order, "at_terminal")
        if (status := final[action]) is not None:
            sim.move(order, status)
        if request.query_params.get("redirect"):
            return RedirectResponse("/", status_code=303)
        return JSONResponse(order.json())

    async def set_status(request: Request) -> Response:
        order = sim.orders.get(request.path_params["order_id"])
        if order is None:
            return _error(404, "order not found")
        status = (await request.json()).get("status")
        try:
            sim.move(order, status)
        except ValueError as exc:
            return _error(409, str(exc))
        return JSONResponse(order.json())

    async def set_faults(request: Request) -> Response:
        body = await request.json()
        sim.faults = Faults(
            fail_next=int(body.get("fail_next", 0)),
            fail_status=int(body.get("fail_status", 500)),
            delay_next=int(body.get("delay_next", 0)),
            delay_seconds=float(body.get("delay_seconds", 0)),
            method=body.get("method"),
        )
        return JSONResponse(vars(sim.faults))

    async def set_chaos(request: Request) -> Response:
        body = await request.json()
        seed = body.get("seed")
        sim.chaos = Chaos(
            seed=seed,
            fail_after=float(body.get("fail_after", 0)),
            late=float(body.get("late", 0)),
            late_seconds=float(body.get("late_seconds", 0)),
            drop=float(body.get("drop", 0)),
            webhook_delay=float(body.get("webhook_delay", 0)),
            webhook_duplicate=float(body.get("webhook_duplicate", 0)),
            method=body.get("method"),
            rng=random.Random(seed),
        )
        return JSONResponse(sim.chaos.summary())

    async def get_chaos(_: Request) -> Response:
        return JSONResponse(sim.chaos.summary())

    async def set_config(request: Request) -> Response:
        body = await request.json()
        if "webhooks" in body:
            sim.webhooks_enabled = bool(body["webhooks"])
        if "webhook_url" in body:
            sim.webhook_url = body["webhook_url"]
        return JSONResponse({"webhooks": sim.webhooks_enabled, "webhook_url": sim.webhook_url})

    async def reset(_: Request) -> Response:
        sim.reset()
        return JSONResponse({"status": "reset"})

    async def list_orders(_: Request) -> Response:
        return JSONResponse([o.record() for o in sim.orders.values()])

    async def list_requests(_: Request) -> Response:
        return JSONResponse(sim.requests)

    async def list_webhooks(_: Request) -> Response:
        return JSONResponse(sim.webhooks)

    async def page(_: Request) -> Response:
        rows = []
        for o in reversed(list(sim.orders.values())):
            buttons = "".join(
                f'<form method="post" '
                f'action="/_sim/terminals/{html.escape(o.terminal_id)}/{a}?redirect=1">'
                f"<button>{a}</button></form>"
                for a in ("approve", "decline", "cancel")
                if o.status in OPEN
            )
            rows.append(
                f"<tr><td>{html.escape(o.terminal_id)}</td><td>{o.id}</td><td>{o.amount}</td>"
                f"<td>{o.status}</td><td style='display:flex;gap:4px'>{buttons}</td></tr>"
            )
        return HTMLResponse(
            "<!doctype html><title>Mercado Pago simulator</title>"
            "<meta http-equiv=refresh content=3>"
            "<h1>Mercado Pago Point simulator</h1><p>Tap a card on a terminal:</p>"
            "<table border=1 cellpadding=4><tr><th>terminal</th><th>order</th><th>amount</th>"
            f"<th>status</th><th></th></tr>{''.join(rows)}</table>"
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        sender = asyncio.create_task(sim.send_webhooks())

        async def expire() -> None:
            while True:
                sim.expire_due()
                await asyncio.sleep(0.5)

        expirer = asyncio.create_task(expire())
        try:
            yield
        finally:
            expirer.cancel()
            await sim.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(sender, 5)

    return Starlette(
        routes=[
            Route("/v1/orders", create_order, methods=["POST"]),
            Route("/v1/orders/{order_id}", get_order, methods=["GET"]),
            Route("/v1/orders/{order_id}/cancel", cancel_order, methods=["POST"]),
            Route("/v1/orders/{order_id}/refund", refund_order, methods=["POST"]),
            Route("/_sim/terminals/{terminal_id}/{action}", terminal_action, methods=["POST"]),
            Route("/_sim/orders/{order_id}/status", set_status, methods=["POST"]),
            Route("/_sim/faults", set_faults, methods=["POST"]),
            Route("/_sim/chaos", set_chaos, methods=["POST"]),
            Route("/_sim/chaos", get_chaos, methods=["GET"]),
            Route("/_sim/config", set_config, methods=["POST"]),
            Route("/_sim/reset", reset, methods=["POST"]),
            Route("/_sim/orders", list_orders, methods=["GET"]),
            Route("/_sim/requests", list_requests, methods=["GET"]),
            Route("/_sim/webhooks", list_webhooks, methods=["GET"]),
            Route("/", page, methods=["GET"]),
        ],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=api_layer)],
        lifespan=lifespan,
    )


def _parse_order(body: object, sim: Simulator) -> SimOrder:
    """A new order from a create body, or ValueError saying what is wrong (the doc's rules)."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    if body.get("type") != "point":
        raise ValueError("type must be point")
    reference = body.get("external_reference")
    if not isinstance(reference, str) or not REFERENCE.match(reference):
        raise ValueError("external_reference must be 1-64 characters of [A-Za-z0-9_-]")
    if any(o.external_reference == reference for o in sim.orders.values()):
        raise ValueError("external_reference already used")
    try:
        expiration = parse_duration(str(body.get("expiration_time", "PT15M")))
    except ValueError as exc:
        raise ValueError(f"expiration_time: {exc}") from None
    if not MIN_EXPIRATION <= expiration <= MAX_EXPIRATION:
        raise ValueError("expiration_time must be between PT30S and PT3H")
    payments = ((body.get("transactions") or {}).get("payments")) or []
    if len(payments) != 1 or not isinstance(payments[0], dict):
        raise ValueError("transactions.payments must hold exactly one payment")
    amount = payments[0].get("amount")
    if not isinstance(amount, str) or not AMOUNT.match(amount) or float(amount) <= 0:
        raise ValueError("amount must be a positive decimal string with two places, e.g. 24.90")
    terminal_id = ((body.get("config") or {}).get("point") or {}).get("terminal_id")
    if not isinstance(terminal_id, str) or not terminal_id:
        raise ValueError("config.point.terminal_id is required")
    return SimOrder(
        id=_new_id("ORD"),
        external_reference=reference,
        terminal_id=terminal_id,
        amount=amount,
        description=body.get("description"),
        expires_at=time.monotonic() + expiration,
    )


def run(
    host: str, port: int, webhook_url: str | None, webhook_secret: str, access_token: str | None
) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sim = Simulator(webhook_url, webhook_secret, access_token)
    logger.info("Mercado Pago simulator on http://%s:%s, webhooks to %s", host, port, webhook_url)
    uvicorn.run(create_app(sim), host=host, port=port, log_level="warning")
