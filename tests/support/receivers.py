"""Counting receivers for the drills and load runs: a real SMTP server (aiosmtpd) and a notify-hook
HTTP server that count copies per order with the key each copy carried, and can hold their answer
to make a sender die mid-delivery. (tests/support/stack.py has the tests' recording sinks.)"""

from __future__ import annotations

import asyncio
import contextlib
import email
import hashlib
import hmac
import json
import re
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.processes import free_port
from tests.support.stack import hook_url

_RECEIPT_ID = re.compile(r"<receipt\.([0-9a-f-]{36})@")


class Receiver:
    """What both receivers keep: copies per order, the keys they carried, calls held open.

    `delay` (seconds) holds every answer that long *after* the copy was counted, as a slow
    receiver does: a sender killed meanwhile cannot know it was delivered (the kill-while-sending
    drills). `in_flight`: order id -> when a held call arrived.
    """

    def __init__(self) -> None:
        self.per_order: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = defaultdict(set)  # Message-ID / Idempotency-Key per order
        self.bodies: dict[str, set[str]] = defaultdict(set)  # sha256 of each copy's content
        self.in_flight: dict[str, float] = {}
        self.delay = 0.0
        self.lock = threading.Lock()

    def count(self, order_id: str, key: str, content: bytes) -> None:
        with self.lock:
            self.per_order[order_id] += 1
            self.keys[order_id].add(key)
            self.bodies[order_id].add(hashlib.sha256(content).hexdigest())

    def holding(self, since: float) -> set[str]:
        """Orders whose call is being held and arrived after `since` (monotonic seconds)."""
        with self.lock:
            return {order_id for order_id, at in self.in_flight.items() if at >= since}

    def hold(self, order_id: str) -> float:
        with self.lock:
            delay = self.delay
            if delay:
                self.in_flight[order_id] = time.monotonic()
        return delay

    def release(self, order_id: str) -> None:
        with self.lock:
            self.in_flight.pop(order_id, None)


class SmtpCounter(Receiver):
    """aiosmtpd on a free loopback port; counts receipts per order (by their stable Message-ID)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        super().__init__()
        self.unrecognised = 0
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        message = email.message_from_bytes(envelope.content)
        message_id = message.get("Message-ID", "")
        match = _RECEIPT_ID.search(message_id)
        if not match:
            with self.lock:
                self.unrecognised += 1
            return "250 OK"
        order_id = match.group(1)
        # The content without the transport's own headers (aiosmtpd may add none, a relay would).
        self.count(order_id, message_id, message.get_payload(decode=True) or b"")
        delay = self.hold(order_id)
        if delay:
            try:
                await asyncio.sleep(delay)
            finally:
                self.release(order_id)
        return "250 OK"

    def close(self) -> None:
        self.controller.stop()


class HookCounter(Receiver):
    """An HTTP server counting the notify hook's signed POSTs per order (the body's `order_id`),
    with the Idempotency-Key and the body of every copy; a call with a bad signature is not
    counted, only noted."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.bad_signature = 0
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                valid = counter.signed(self.headers.get("X-Kiosk-Signature", ""), body)
                order_id = None
                with contextlib.suppress(ValueError, AttributeError):
                    order_id = str(json.loads(body).get("order_id"))
                if valid and order_id:
                    counter.count(order_id, key, body)
                    delay = counter.hold(order_id)
                    if delay:
                        time.sleep(delay)
                        counter.release(order_id)
                else:
                    with counter.lock:
                        counter.bad_signature += 1
                with contextlib.suppress(OSError):  # the sender may have been killed meanwhile
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = hook_url(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def signed(self, header: str, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        expected = hmac.new(
            self.secret.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    def close(self) -> None:
        self.server.shutdown()
