"""Mercado Pago's `x-signature` check (docs: shared mercadopago-point.md, "Signature check").

Pure functions, no database: a request is verified before anything is stored. The manifest is
`id:{data.id};request-id:{x-request-id};ts:{ts};`, a missing part left out; the HMAC-SHA256 of it
with the webhook secret must equal `v1` (compared in constant time) and `ts` (unix seconds) must
be within the tolerance of now. A `data.id` signed lowercased (older senders) is accepted too.

A `data.id` or `x-request-id` holding `;`, `,` or `:` is refused before any HMAC: such a value
could splice the manifest, e.g. a signature for `data.id=X` with request id `R` would also verify
`data.id="X;request-id:R"` sent with no request id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time


class InvalidSignature(Exception):
    """Missing, malformed, wrong or stale signature; the message says which (never the secret)."""


# The manifest's own separators, and the x-signature header's.
_SEPARATORS = re.compile("[;,:]")


def manifest(data_id: str | None, request_id: str | None, ts: str | None) -> str:
    parts = (("id", data_id), ("request-id", request_id), ("ts", ts))
    return "".join(f"{key}:{value};" for key, value in parts if value)


def sign(secret: str, data_id: str | None, request_id: str | None, ts: str | None) -> str:
    message = manifest(data_id, request_id, ts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header(secret: str, data_id: str | None, request_id: str | None, ts: int | None = None) -> str:
    """An `x-signature` value, as Mercado Pago (and the simulator) sends it."""
    stamp = str(int(time.time()) if ts is None else ts)
    return f"ts={stamp},v1={sign(secret, data_id, request_id, stamp)}"


def parse(value: str) -> tuple[str, str]:
    """`ts` and `v1` of an `x-signature` header."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if sep:
            fields.setdefault(key.strip().lower(), item.strip())
    ts, v1 = fields.get("ts"), fields.get("v1")
    if not ts or not v1:
        raise InvalidSignature("x-signature must carry ts and v1")
    if not (ts.isascii() and ts.isdigit()):  # "²" is a digit to str.isdigit, not to int()
        raise InvalidSignature("x-signature ts is not unix seconds")
    return ts, v1.lower()


def verify(
    signature: str | None,
    data_id: str | None,
    request_id: str | None,
    secret: str,
    tolerance: int,
    now: float | None = None,
) -> int:
    """Check a notification's signature; return its timestamp or raise InvalidSignature."""
    if not signature:
        raise InvalidSignature("x-signature header missing")
    if (data_id and _SEPARATORS.search(data_id)) or (request_id and _SEPARATORS.search(request_id)):
        raise InvalidSignature("data.id and x-request-id may not hold ';', ',' or ':'")
    ts, v1 = parse(signature)
    candidates = (
        [data_id] if not data_id or data_id == data_id.lower() else [data_id, data_id.lower()]
    )
    # Compare with every candidate, so the time taken does not depend on which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(
            sign(secret, candidate, request_id, ts).encode(), v1.encode()
        )
    if not matched:
        raise InvalidSignature("x-signature does not match")
    stamp = int(ts)
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise InvalidSignature("x-signature timestamp outside the accepted window (replay?)")
    return stamp
