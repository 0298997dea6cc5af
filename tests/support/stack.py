"""pytest plugin and helpers for the payment tests: the kiosk API, the Mercado Pago simulator, an
SMTP server and a notify-hook receiver, all real servers on 127.0.0.1, plus per-test workers.

Module-scoped servers keep the tests fast, and start only when a test of the module asks for them;
each test starts from empty tables (tests/support/database.py), a reset simulator and empty sinks.
Workers are per test, started after the tables are emptied.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg.rows import dict_row

from kiosk.settings import get_settings
from kiosk.webhooks import signature
from tests.support.config import ADMIN_TOKEN, HOOK_SECRET, MAIL_FROM, TERMINAL, WEBHOOK_SECRET
from tests.support.processes import (
    HTTP,
    TLS,
    Api,
    Process,
    Worker,
    child_env,
    free_port,
    wait_for,
)

# No periodic tick of the payment clean-up and the order expiry during a test (a worker defers the
# latest past tick at start): extra environment for `start_worker(**QUIET)`.
QUIET = {"KIOSK_CLEANUP_PAYMENT_INTENTS_CRON": "0 0 1 1 *", "KIOSK_EXPIRE_ORDERS_CRON": "0 0 1 1 *"}


# -- servers ---------------------------------------------------------------------------------------


class SimulatorProcess(Process):
    """`kiosk simulator` on a given port."""

    def __init__(self, env: dict[str, str], log_dir: Path, port: int, webhook_url: str):
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable,
            "-m",
            "kiosk.cli",
            "simulator",
            "--port",
            str(port),
            "--webhook-url",
            webhook_url,
        ]
        super().__init__("simulator", argv, env, log_dir)
        wait_for(self._up, timeout=30, what=f"simulator on {self.url}")

    def _up(self) -> bool:
        if not self.alive():
            raise AssertionError(f"simulator exited:\n{self.output()}")
        return HTTP.get(f"{self.url}/_sim/orders", timeout=2).status_code == 200

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return HTTP.post(f"{self.url}{path}", json=body or {}, timeout=10)

    def get(self, path: str) -> Any:
        return HTTP.get(f"{self.url}{path}", timeout=10).json()

    def reset(self) -> None:
        self.post("/_sim/reset").raise_for_status()

    def faults(self, **faults: object) -> None:
        self.post("/_sim/faults", faults).raise_for_status()

    def chaos(self, **chaos: object) -> None:
        """Random faults on a share of the calls (the money drill); none when called empty."""
        self.post("/_sim/chaos", chaos).raise_for_status()

    def webhooks(self, enabled: bool) -> None:
        self.post("/_sim/config", {"webhooks": enabled}).raise_for_status()

    def tap(self, terminal_id: str, action: str = "approve") -> dict:
        response = self.post(f"/_sim/terminals/{terminal_id}/{action}")
        assert response.status_code == 200, response.text
        return response.json()

    def order(self, provider_order_id: str) -> dict:
        return HTTP.get(
            f"{self.url}/v1/orders/{provider_order_id}",
            timeout=10,
            headers={"Authorization": "Bearer test-access-token"},
        ).json()


class SmtpSink:
    """aiosmtpd on a free port, keeping every message it accepts."""

    def __init__(self, port: int | None = None) -> None:
        self.messages: list[dict] = []
        self.refuse_next = 0  # answer DATA with a temporary failure this many times
        self.delay_next = 0  # take the next N messages, but answer them `delay_seconds` late
        self.delay_seconds = 3.0
        self.port = port or free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return "451 4.3.0 try again later"
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "content": envelope.content.decode(errors="replace"),
            }
        )
        if self.delay_next > 0:  # the message is in; the sender gives up waiting for the answer
            self.delay_next -= 1
            await asyncio.sleep(self.delay_seconds)
        return "250 OK"


def hook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/hooks/order-paid"


class HookSink:
    """An HTTP server recording the notify hook's POSTs; answers `statuses` in turn, then 200."""

    def __init__(self, port: int = 0) -> None:
        self.calls: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0  # seconds before answering
        self.delays: list[
            float
        ] = []  # seconds before answering the next calls, in turn (then `delay`)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.calls.append({"headers": dict(self.headers), "body": body})
                code = sink.statuses.pop(0) if sink.statuses else 200
                time.sleep(sink.delays.pop(0) if sink.delays else sink.delay)
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = hook_url(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def clear(self) -> None:
        self.calls.clear()
        self.statuses.clear()
        self.delays.clear()
        self.delay = 0.0


# -- the kiosk API ---------------------------------------------------------------------------------


class Kiosk:
    def __init__(self, url: str):
        self.url = url
        # The admin token works on the order endpoints for any order and terminal
        # (tests/integration/test_devices.py covers device tokens).
        self.http = httpx.Client(
            base_url=url,
            timeout=30,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            verify=TLS,
        )

    def product(
        self, sku: str, price_cents: int = 250, stock: int = 10, name: str | None = None
    ) -> dict:
        response = self.http.put(
            f"/admin/products/{sku}",
            json={
                "name": name or sku.title(),
                "price_cents": price_cents,
                "stock": stock,
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def order(self, items: dict[str, int], email: str | None = "ana@example.com") -> dict:
        response = self.http.post(
            "/orders",
            json={
                "items": [{"sku": sku, "quantity": q} for sku, q in items.items()],
                "customer_email": email,
            },
        )
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, order_id: str) -> dict:
        response = self.http.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def pay(self, order_id: str, terminal_id: str = TERMINAL) -> httpx.Response:
        return self.http.post(
            f"/orders/{order_id}/payment-intents", json={"terminal_id": terminal_id}
        )

    def cancel(self, order_id: str) -> httpx.Response:
        return self.http.post(f"/orders/{order_id}/cancel")

    def stock(self, sku: str) -> int:
        return next(p["stock"] for p in self.http.get("/products").json() if p["sku"] == sku)

    def status_is(self, order_id: str, status: str) -> bool:
        return self.get(order_id)["status"] == status


def notify(
    api_url: str,
    data_id: str,
    notification_id: int | str,
    action: str = "order.processed",
    *,
    ts: int | None = None,
    secret: str = WEBHOOK_SECRET,
    body: bytes | None = None,
    headers: dict | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """POST a Mercado Pago notification to the kiosk, signed like Mercado Pago signs it."""
    request_id = str(uuid.uuid4())
    if body is None:
        body = json.dumps(
            {
                "id": notification_id,
                "type": "order",
                "action": action,
                "api_version": "v1",
                "application_id": "2836150016842090",
                "date_created": "2026-11-25T12:01:07Z",
                "live_mode": False,
                "user_id": "1243567810",
                "data": {"id": data_id, "status": action.removeprefix("order.")},
            }
        ).encode()
    all_headers = {
        "x-signature": signature.header(secret, data_id, request_id, ts),
        "x-request-id": request_id,
        "content-type": "application/json",
        **(headers or {}),
    }
    post = (client or HTTP).post
    return post(
        f"{api_url}/webhooks/mercadopago",
        params={"data.id": data_id, "type": "order"},
        content=body,
        headers=all_headers,
        timeout=30,
    )


# -- database --------------------------------------------------------------------------------------


def rows(database_url: str, query: str, params: tuple | dict | None = None) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def backdate_orders(database_url: str, *order_ids: str) -> None:
    rows(
        database_url,
        "UPDATE orders SET expires_at = now() - interval '1 second' "
        "WHERE id = ANY(%s) RETURNING id",
        ([uuid.UUID(i) for i in order_ids],),
    )


def jobs(database_url: str, task_name: str) -> list[dict]:
    return rows(
        database_url,
        "SELECT id, status, attempts, queueing_lock, lock, args FROM procrastinate_jobs "
        "WHERE task_name = %s ORDER BY id",
        (task_name,),
    )


# -- fixtures --------------------------------------------------------------------------------------

# Ports are chosen before any server starts, so that `stack_env` (and with it the API alone) does
# not start the simulator, the SMTP server or the hook receiver: a module gets those only when one
# of its tests asks for `sim`, `smtp`, `hook`, `kiosk` or `start_worker`.


@pytest.fixture(scope="module")
def smtp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def hook_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def sim_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def smtp_server(smtp_port: int) -> Iterator[SmtpSink]:
    sink = SmtpSink(smtp_port)
    sink.controller.start()
    yield sink
    sink.controller.stop()


@pytest.fixture(scope="module")
def hook_server(hook_port: int) -> Iterator[HookSink]:
    sink = HookSink(hook_port)
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


@pytest.fixture
def smtp(smtp_server: SmtpSink) -> SmtpSink:
    """The module's SMTP server, emptied and answering normally for this test."""
    smtp_server.messages.clear()
    smtp_server.refuse_next = 0
    smtp_server.delay_next = 0
    return smtp_server


@pytest.fixture
def hook(hook_server: HookSink) -> HookSink:
    """The module's hook receiver, emptied and answering 200 at once for this test."""
    hook_server.clear()
    return hook_server


@pytest.fixture(scope="module")
def stack_env(database_url: str, sim_port: int, smtp_port: int, hook_port: int) -> dict[str, str]:
    return child_env(
        database_url,
        MP_API_BASE_URL=f"http://127.0.0.1:{sim_port}",
        KIOSK_MP_TIMEOUT_SECONDS="2",
        KIOSK_PAYMENT_MAX_ATTEMPTS="4",
        KIOSK_SMTP_HOST="127.0.0.1",
        KIOSK_SMTP_PORT=str(smtp_port),
        KIOSK_SMTP_STARTTLS="false",
        KIOSK_SMTP_FROM=MAIL_FROM,
        KIOSK_NOTIFY_URL=hook_url(hook_port),
        KIOSK_NOTIFY_SECRET=HOOK_SECRET,
        KIOSK_OUTBOUND_ALLOW_HOSTS="127.0.0.1,localhost",
        KIOSK_DELIVERY_TIMEOUT_SECONDS="5",
        KIOSK_WEBHOOK_MAX_BYTES="4096",
    )


@pytest.fixture(scope="module")
def same_settings(stack_env: dict[str, str]) -> Iterator[None]:
    """This process sees the settings the API and workers see (simulator URL, SMTP, hook): for
    modules that call payment code in-process (`pytestmark = pytest.mark.usefixtures(...)`)."""
    ours = {k: v for k, v in stack_env.items() if k.startswith(("KIOSK_", "MP_"))}
    saved = {k: os.environ.get(k) for k in ours}
    os.environ.update(ours)
    get_settings.cache_clear()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def api(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = Api(stack_env, tmp_path_factory.mktemp("api"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sim(
    api: Api, stack_env: dict[str, str], sim_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimulatorProcess]:
    server = SimulatorProcess(
        stack_env, tmp_path_factory.mktemp("sim"), sim_port, f"{api.url}/webhooks/mercadopago"
    )
    yield server
    server.stop()


@pytest.fixture
def kiosk(api: Api, sim: SimulatorProcess) -> Iterator[Kiosk]:
    """The kiosk API with a reset simulator (ask for `smtp`/`hook` too to see deliveries)."""
    sim.reset()
    client = Kiosk(api.url)
    yield client
    client.http.close()


@pytest.fixture
def shop(api: Api) -> Iterator[Kiosk]:
    """The kiosk API alone, for tests that charge nothing: no simulator, SMTP server or hook."""
    client = Kiosk(api.url)
    yield client
    client.http.close()


@pytest.fixture
def start_worker(
    stack_env: dict[str, str], smtp: SmtpSink, hook: HookSink, tmp_path: Path
) -> Iterator:
    """Start `procrastinate worker` processes (concurrency 3, 0.5 s polling) for this test; they
    deliver receipts and hooks, so the SMTP server and the hook receiver run too."""
    started: list[Worker] = []

    def start(**extra_env: str) -> Worker:
        env = {**stack_env, **extra_env}
        worker = Worker(
            env,
            tmp_path,
            "--concurrency",
            "3",
            "--fetch-job-polling-interval",
            "0.5",
            name=f"worker{len(started)}",
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
