"""Devices in the database: create (the token shown once), list, revoke, authenticate a token,
and the open-order limit checked when a device creates an order.

Invariants: a token is `kdt_` + 43 random url-safe characters (32 bytes from `secrets`); only its
SHA-256 is stored, so a copy of the table gives no usable token. A token is found by that hash
(one unique-index probe) and the stored hash is compared again in constant time. A revoked
device's token is refused from the commit of its revocation on: nothing caches tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import audit, db
from kiosk.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.devices")

TOKEN_PREFIX = "kdt_"
TOKEN_BYTES = 32
# A token longer than this is not one of ours: refused before it is hashed.
MAX_TOKEN_LENGTH = 128
# The terminal ids Mercado Pago uses (the same rule as POST /orders/{id}/payment-intents).
TERMINAL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
MAX_TERMINALS = 50
MAX_NAME = 100


@dataclass(frozen=True)
class Device:
    id: int
    name: str
    terminal_ids: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    open_orders: int | None = None  # in lists only


@dataclass(frozen=True)
class NewDevice:
    """A device just created and its token: the only time the token exists outside the device."""

    device: Device
    token: str


@dataclass(frozen=True)
class Caller:
    """Who calls an order endpoint: a device, or the admin token (`device` None)."""

    device: Device | None

    @property
    def device_id(self) -> int | None:
        return self.device.id if self.device else None

    def check_terminal(self, terminal_id: str) -> None:
        """Forbidden unless the terminal is bound to the device; the admin may use any."""
        if self.device is not None and terminal_id not in self.device.terminal_ids:
            raise Forbidden(f"terminal {terminal_id} is not bound to this device")

    def check_owns(self, order_id: object, device_id: int | None) -> None:
        """NotFound (as for an unknown order) when a device reads another's order."""
        if self.device is not None and device_id != self.device.id:
            raise NotFound(f"order {order_id} not found")


ADMIN = Caller(None)


def _device(row: dict[str, Any]) -> Device:
    return Device(
        id=row["id"],
        name=row["name"],
        terminal_ids=tuple(row["terminal_ids"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        open_orders=row.get("open_orders"),
    )


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise Invalid(f"name: 1 to {MAX_NAME} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise Invalid("name: no control characters")
    return name


def clean_terminals(terminal_ids: list[str]) -> list[str]:
    """The terminal ids, duplicates dropped, in the given order."""
    unique = list(dict.fromkeys(t.strip() for t in terminal_ids))
    if not unique or len(unique) > MAX_TERMINALS:
        raise Invalid(f"terminal_ids: 1 to {MAX_TERMINALS} terminal ids")
    for terminal_id in unique:
        if not re.fullmatch(TERMINAL_ID_PATTERN, terminal_id):
            raise Invalid(
                f"terminal_ids: {terminal_id[:100]!r} is not a terminal id "
                "(letters, digits, _ and -, at most 100)"
            )
    return unique


async def create(name: str, terminal_ids: list[str], by: audit.Operator) -> NewDevice:
    """A new device bound to `terminal_ids`, with a fresh token; audited (`device.create`).

    Conflict when an active device already has that name.
    """
    name, terminals = clean_name(name), clean_terminals(terminal_ids)
    token = new_token()
    async with db.transaction() as conn:
        try:
            async with conn.transaction():
                row = await db.fetch_row(
                    conn,
                    QUERIES["insert_device"],
                    {"name": name, "terminal_ids": terminals, "token_hash": token_hash(token)},
                )
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"an active device is already named {name!r}") from None
        device = _device(row)
        await audit.record_by(
            conn,
            by,
            "device.create",
            f"device:{device.id}",
            {"name": name, "terminal_ids": terminals},
        )
    return NewDevice(device, token)


async def list_page(*, cursor: int | None = None, limit: int) -> list[Device]:
    """Devices with an id below `cursor` (all when None), newest first, at most `limit`."""
    async with db.transaction() as conn:
        rows = await db.fetch_all(conn, QUERIES["list_devices"], {"cursor": cursor, "limit": limit})
    return [_device(row) for row in rows]


async def revoke(device_id: int, by: audit.Operator) -> Device:
    """Revoke the device: its token is refused from the commit on. Audited (`device.revoke`) the
    first time; revoking a revoked device changes nothing. NotFound for an unknown id."""
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["revoke_device"], {"id": device_id})
        if row is None:
            row = await db.fetch_one(conn, QUERIES["get_device"], {"id": device_id})
            if row is None:
                raise NotFound(f"device {device_id} not found")
            return _device(row)
        device = _device(row)
        await audit.record_by(
            conn,
            by,
            "device.revoke",
            f"device:{device.id}",
            {"name": device.name, "terminal_ids": list(device.terminal_ids)},
        )
    return device


async def authenticate(token: str) -> Device | None:
    """The active device whose token this is, or None. No database round trip for a string that
    cannot be a device token."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = token_hash(token)
    async with db.transaction() as conn:
        row = await db.fetch_one(conn, QUERIES["device_by_token_hash"], {"token_hash": digest})
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
        return None
    return _device(row)


async def take_order_slot(conn: psycopg.AsyncConnection, device_id: int) -> None:
    """Check, in the transaction that creates the order, that the device may open one more.

    Locks the device row, so two orders of one device never both take the last slot, and a
    device revoked meanwhile creates nothing (Unauthorized). TooManyRequests, with the seconds
    until its first open order expires, when it already holds KIOSK_DEVICE_MAX_OPEN_ORDERS.
    """
    device = await db.fetch_one(conn, QUERIES["lock_active_device"], {"id": device_id})
    if device is None:
        raise Unauthorized("device token revoked")
    limit = get_settings().device_max_open_orders
    row = await db.fetch_row(conn, QUERIES["open_orders_of_device"], {"id": device_id})
    if row["open"] >= limit:
        wait = (row["first_expires_at"] - dt.datetime.now(dt.UTC)).total_seconds()
        raise TooManyRequests(
            f"device {device['name']!r} already has {row['open']} unpaid orders (the limit is "
            f"{limit}): pay or cancel one, or retry when the oldest expires",
            retry_after=math.ceil(wait),
        )
