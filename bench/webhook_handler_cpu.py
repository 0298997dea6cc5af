"""CPU per webhook notification in the API's ASGI stack, without a server or a database.

Drives `kiosk.app:app` (latency middleware, head limit, the webhook fast path, `handle`) directly
with signed notifications and measures process CPU per notification, in three cases:
- `accepted`: a valid notification; the inbox's `accept` answers at once (the database write,
  measured by bench/webhook_ingest.py, is left out: this isolates the handler's own CPU);
- `bad_signature`: refused 401 before anything is stored;
- `db_down`: `accept` raises PoolTimeout and the fast path answers 503 with the app's handler.

    .venv/bin/python bench/webhook_handler_cpu.py [--n 20000]
    .venv/bin/python bench/webhook_handler_cpu.py --compare before=/path/to/old/tree after=.

`--compare` runs the script once per tree and round (interleaved, three rounds, the best of each
case kept), each in its own process importing that tree's kiosk: before/after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SECRET = "bench-webhook-secret"
ENV = {
    "KIOSK_ADMIN_TOKEN": "bench-admin-token-0123456789",
    "MP_ACCESS_TOKEN": "bench-access-token",
    "MP_WEBHOOK_SECRET": SECRET,
    "DATABASE_URL": "postgresql://bench@127.0.0.1:1/none",
    "KIOSK_LOG_LEVEL": "ERROR",
}


def measure(n: int) -> dict[str, float]:
    """Microseconds of process CPU per notification, per case, for the kiosk on sys.path."""
    os.environ.update(ENV)
    tree = os.environ.get("KIOSK_BENCH_TREE")
    if tree:  # this tree's kiosk, not the editable install's
        sys.meta_path[:] = [
            f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
        ]
        sys.path.insert(0, tree)
    import psycopg_pool

    from kiosk.app import app
    from kiosk.webhooks import inbox, signature

    async def accepted(notification: inbox.Notification) -> inbox.Accepted:
        return inbox.Accepted(1, "received", 1)

    async def pool_timeout(notification: inbox.Notification) -> inbox.Accepted:
        raise psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")

    body = json.dumps(
        {"id": 1, "type": "order", "action": "order.processed", "data": {"id": "ORD01"}}
    ).encode()

    def scope(signed: bool) -> dict:
        x_signature = signature.header(SECRET if signed else "wrong", "ORD01", "req-1")
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhooks/mercadopago",
            "raw_path": b"/webhooks/mercadopago",
            "root_path": "",
            "query_string": b"data.id=ORD01&type=order",
            "server": ("kiosk", 80),
            "client": ("127.0.0.1", 5000),
            "app": app,
            "headers": [
                (b"host", b"kiosk"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", b"req-1"),
                (b"x-signature", x_signature.encode()),
            ],
        }

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run(case: str) -> float:
        inbox.accept = pool_timeout if case == "db_down" else accepted  # type: ignore[assignment]
        template = scope(signed=case != "bad_signature")
        for _ in range(min(n, 500)):  # warm up
            await app(dict(template), receive, send)
        statuses.clear()
        started = time.process_time()
        for _ in range(n):
            await app(dict(template), receive, send)
        spent = time.process_time() - started
        expected = {"accepted": 200, "bad_signature": 401, "db_down": 503}[case]
        assert set(statuses) == {expected}, (case, set(statuses))
        return spent / n * 1e6

    import logging

    logging.disable(logging.CRITICAL)  # the 401 and 503 paths log a warning per request

    async def main() -> dict[str, float]:
        return {case: await run(case) for case in ("accepted", "bad_signature", "db_down")}

    return asyncio.run(main())


def compare(trees: list[tuple[str, str]], n: int, rounds: int = 3) -> None:
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for label, tree in trees:
            env = {**os.environ, "KIOSK_BENCH_TREE": str(Path(tree).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--n", str(n), "--json"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for case, value in json.loads(out).items():
                best.setdefault(label, {})[case] = min(
                    value, best.get(label, {}).get(case, float("inf"))
                )
    cases = list(next(iter(best.values())))
    print(f"{'us CPU per notification':<24}" + "".join(f"{case:>15}" for case in cases))
    for label, values in best.items():
        print(f"{label:<24}" + "".join(f"{values[case]:>15.1f}" for case in cases))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20000, help="notifications per case")
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON (used by --compare)"
    )
    parser.add_argument(
        "--compare", nargs="+", metavar="LABEL=TREE", help="source trees to compare"
    )
    args = parser.parse_args()
    if args.compare:
        compare([tuple(item.split("=", 1)) for item in args.compare], args.n)  # type: ignore[misc]
        return 0
    figures = measure(args.n)
    if args.json:
        print(json.dumps(figures))
    else:
        for case, value in figures.items():
            print(f"{case:<15}{value:8.1f} us CPU per notification")
    return 0


if __name__ == "__main__":
    sys.exit(main())
