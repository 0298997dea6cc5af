#!/usr/bin/env python3
"""What the hostile-input checks (issue 12) cost the webhook's fast path, per request, in process.

Times, with the headers and body a Mercado Pago notification carries:
- `HeadLimit` (431/414, kiosk/http_limits.py) in front of an ASGI app that does nothing, against
  that app alone;
- the separator check `signature.verify` now makes on `data.id` and `x-request-id`;
- the body's JSON decoding with the NaN/Infinity/range hooks (kiosk/webhooks/inbox.py), against
  plain `json.loads`.

Best of `--repeat` rounds of `--number` calls each, in microseconds per call. No server, no
database, a few seconds of one core. docs/benchmarks.md has the figures.

    .venv/bin/python bench/hostile_checks.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.http_limits import HeadLimit  # noqa: E402
from kiosk.webhooks import inbox, signature  # noqa: E402

BODY = json.dumps(
    {
        "id": 123456789012,
        "type": "order",
        "action": "order.processed",
        "api_version": "v1",
        "application_id": "2836150016842090",
        "date_created": "2026-11-25T12:01:07Z",
        "live_mode": False,
        "user_id": "1243567810",
        "data": {"id": "ORD01JQ4S4KY8HWQ6NA5PXB65B3D3", "status": "processed"},
    }
)
REQUEST_ID = str(uuid.uuid4())
HEADERS = [
    (b"host", b"kiosk.example.com"),
    (b"user-agent", b"MercadoPago WebHook v1.0"),
    (b"accept", b"*/*"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
    (b"x-request-id", REQUEST_ID.encode()),
    (
        b"x-signature",
        signature.header("secret", "ORD01JQ4S4KY8HWQ6NA5PXB65B3D3", REQUEST_ID).encode(),
    ),
    (b"x-forwarded-for", b"203.0.113.7"),
    (b"x-forwarded-proto", b"https"),
]
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/webhooks/mercadopago",
    "raw_path": b"/webhooks/mercadopago",
    "query_string": b"data.id=ORD01JQ4S4KY8HWQ6NA5PXB65B3D3&type=order",
    "headers": HEADERS,
}


async def nothing(scope: dict, receive: object, send: object) -> None:
    return None


def per_call(function, number: int, repeat: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    limited = HeadLimit(nothing, max_bytes=16 * 1024)

    def drive(app) -> None:
        coroutine = app(SCOPE, None, None)
        with contextlib.suppress(StopIteration):  # runs to completion: nothing awaits
            coroutine.send(None)

    base = per_call(lambda: drive(nothing), args.number, args.repeat)
    head = per_call(lambda: drive(limited), args.number, args.repeat)
    separators = per_call(
        lambda: (
            signature._SEPARATORS.search("ORD01JQ4S4KY8HWQ6NA5PXB65B3D3"),
            signature._SEPARATORS.search(REQUEST_ID),
        ),
        args.number,
        args.repeat,
    )
    plain = per_call(lambda: json.loads(BODY), args.number, args.repeat)
    hooked = per_call(lambda: inbox._DECODER.decode(BODY), args.number, args.repeat)
    print(f"ASGI app alone                   {base:7.3f} us")
    print(f"HeadLimit in front of it         {head:7.3f} us  (+{head - base:.3f} us)")
    print(f"separator check, two values      {separators:7.3f} us")
    print(f"json.loads of the body           {plain:7.3f} us")
    print(f"decoder with NaN/range hooks     {hooked:7.3f} us  ({hooked - plain:+.3f} us)")


if __name__ == "__main__":
    main()
