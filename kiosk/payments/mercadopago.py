"""Mercado Pago's Orders API for Point: the one place the kiosk talks to Mercado Pago.

The subset is /work/shared/docs/mercadopago-point.md (create, read, cancel and refund an order on a
terminal).
Every call carries the bearer token, runs under an overall deadline of KIOSK_MP_TIMEOUT_SECONDS
(plus httpx's per-phase timeouts) and maps failures to a few exceptions that say what the caller
may do next: `MPUnavailable` means "the outcome is unknown, ask again with the same idempotency
key", except its `MPNotSent` (the connection was never made: nothing reached Mercado Pago); the
other errors are answers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from kiosk import tls
from kiosk.money import amount
from kiosk.validators import ID_PATTERN, format_duration

logger = logging.getLogger("kiosk.mercadopago")

ORDER_STATUSES = frozenset(
    {
        "created",
        "at_terminal",
        "processed",
        "failed",
        "canceled",
        "expired",
        "action_required",
        "refunded",
    }
)


class MPPayment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    amount: str | None = None
    status: str | None = None
    status_detail: str | None = None


class MPTransactions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    payments: list[MPPayment] = []


class MPPoint(BaseModel):
    model_config = ConfigDict(extra="ignore")
    terminal_id: str | None = None


class MPConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    point: MPPoint | None = None


class MPOrder(BaseModel):
    """A Mercado Pago order, as much of it as the kiosk reads."""

    model_config = ConfigDict(extra="ignore")
    id: str
    status: str
    status_detail: str | None = None
    external_reference: str | None = None
    transactions: MPTransactions = MPTransactions()
    config: MPConfig | None = None

    @property
    def payment_id(self) -> str | None:
        payments = self.transactions.payments
        return payments[0].id if payments else None


@dataclass(frozen=True)
class Charge:
    """What the kiosk asks a terminal to charge."""

    external_reference: str
    amount_cents: int
    terminal_id: str
    expiration_seconds: int
    description: str

    def body(self) -> dict[str, Any]:
        return {
            "type": "point",
            "external_reference": self.external_reference,
            "expiration_time": format_duration(self.expiration_seconds),
            "description": self.description,
            "transactions": {"payments": [{"amount": amount(self.amount_cents)}]},
            "config": {
                "point": {"terminal_id": self.terminal_id, "print_on_terminal": "no_ticket"}
            },
        }


class MPError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class MPUnavailable(MPError):
    """Not reached, 5xx or 429: the outcome is unknown; retry with the same idempotency key."""


class MPTimeout(MPUnavailable):
    """No answer within KIOSK_MP_TIMEOUT_SECONDS."""


class MPNotSent(MPUnavailable):
    """The connection could not be made (refused, or timed out connecting): the request never
    reached Mercado Pago, so it created nothing. Still worth retrying."""


class MPConflict(MPError):
    """409: the terminal already has a queued order, or the order cannot be cancelled now."""


class MPNotFound(MPError):
    """404: no such order."""


class MPRejected(MPError):
    """Any other 4xx: the request itself is wrong (bad body, bad token)."""


class MercadoPago:
    """An httpx client on MP_API_BASE_URL; use as `async with MercadoPago.from_settings() as mp`."""

    def __init__(
        self,
        base_url: str,
        access_token: SecretStr,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {access_token.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            follow_redirects=False,
            verify=tls.http(),
        )

    @classmethod
    def from_settings(cls) -> MercadoPago:
        from kiosk.settings import get_settings

        settings = get_settings()
        return cls(settings.mp_api_base_url, settings.mp_access_token, settings.mp_timeout_seconds)

    async def __aenter__(self) -> MercadoPago:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def create_order(self, charge: Charge, idempotency_key: str) -> MPOrder:
        """POST /v1/orders. A retry with the same key returns the first order, never a second."""
        return await self._call(
            "POST", "/v1/orders", json=charge.body(), idempotency_key=idempotency_key
        )

    async def get_order(self, provider_order_id: str) -> MPOrder:
        return await self._call("GET", f"/v1/orders/{_checked(provider_order_id)}")

    async def cancel_order(self, provider_order_id: str, idempotency_key: str) -> MPOrder:
        """Only a `created` order can be cancelled; anything else answers MPConflict."""
        path = f"/v1/orders/{_checked(provider_order_id)}/cancel"
        return await self._call("POST", path, idempotency_key=idempotency_key)

    async def refund_order(self, provider_order_id: str, idempotency_key: str) -> MPOrder:
        """A total refund; only a `processed` order can be refunded (else MPConflict). A retry
        with the same key answers as the first call did."""
        path = f"/v1/orders/{_checked(provider_order_id)}/refund"
        return await self._call("POST", path, idempotency_key=idempotency_key)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> MPOrder:
        headers = {"X-Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.request(method, path, json=json, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            logger.warning("mercadopago %s %s: %s", method, path, type(exc).__name__)
            raise MPNotSent(f"cannot connect to Mercado Pago ({type(exc).__name__})") from None
        except (TimeoutError, httpx.TimeoutException):
            logger.warning("mercadopago %s %s: no answer in %ss", method, path, self.timeout)
            raise MPTimeout(f"Mercado Pago did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            logger.warning("mercadopago %s %s: %s", method, path, type(exc).__name__)
            raise MPUnavailable(f"cannot reach Mercado Pago ({type(exc).__name__})") from None
        logger.debug("mercadopago %s %s -> %s", method, path, response.status_code)
        status = response.status_code
        if status >= 500 or status == 429:
            raise MPUnavailable(f"Mercado Pago answered HTTP {status}", status)
        if status >= 400:
            message = f"Mercado Pago answered HTTP {status}: {_message(response)}"
            kind = {404: MPNotFound, 409: MPConflict}.get(status, MPRejected)
            raise kind(message, status)
        try:
            return MPOrder.model_validate_json(response.content)
        except ValidationError:
            message = f"Mercado Pago answered HTTP {status} with an unreadable order"
            raise MPUnavailable(message, status) from None


def _checked(provider_order_id: str) -> str:
    if not ID_PATTERN.match(provider_order_id):
        raise ValueError(f"not a Mercado Pago order id: {provider_order_id!r}")
    return provider_order_id


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return str(body)[:200]
