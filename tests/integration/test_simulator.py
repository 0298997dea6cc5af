"""The Mercado Pago simulator behaves like the provider doc says (a real `kiosk simulator` process),
and `kiosk tap` drives it."""

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kiosk.webhooks import signature
from tests.support import PROJECT_DIR, child_env, free_port, wait_for
from tests.support.config import ACCESS_TOKEN, WEBHOOK_SECRET
from tests.support.stack import SimulatorProcess

AUTH = {"Authorization": f"Bearer {ACCESS_TOKEN}"}


def order_body(reference="kiosk-ref-1", terminal="T1", amount="24.90", expiration="PT5M"):
    return {
        "type": "point",
        "external_reference": reference,
        "expiration_time": expiration,
        "description": "Kiosk order 1042",
        "transactions": {"payments": [{"amount": amount}]},
        "config": {"point": {"terminal_id": terminal, "print_on_terminal": "no_ticket"}},
    }


class Receiver:
    """Records the webhooks the simulator sends (a real HTTP server on a free port)."""

    def __init__(self):
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/mercadopago"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def simulator(receiver, tmp_path_factory):
    env = child_env(
        "postgresql://unused/none", MP_WEBHOOK_SECRET=WEBHOOK_SECRET, MP_ACCESS_TOKEN=ACCESS_TOKEN
    )
    process = SimulatorProcess(env, tmp_path_factory.mktemp("sim"), free_port(), receiver.url)
    yield process
    process.stop()


@pytest.fixture
def mp(simulator, receiver):
    simulator.reset()
    receiver.calls.clear()
    with httpx.Client(base_url=simulator.url, headers=AUTH, timeout=10) as client:
        yield client


def test_create_read_and_idempotency(mp):
    created = mp.post("/v1/orders", json=order_body(), headers={"X-Idempotency-Key": "k1"})
    assert created.status_code == 201
    order = created.json()
    assert order["id"].startswith("ORD") and order["status"] == "created"
    assert order["transactions"]["payments"][0]["amount"] == "24.90"
    assert order["config"]["point"]["terminal_id"] == "T1"
    again = mp.post("/v1/orders", json=order_body(), headers={"X-Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json()["id"] == order["id"]
    assert mp.get(f"/v1/orders/{order['id']}").json()["status"] == "created"
    assert mp.get("/v1/orders/ORD0UNKNOWN").status_code == 404


def test_auth_validation_and_busy_terminal(mp):
    wrong_token = {"X-Idempotency-Key": "k", "Authorization": "Bearer x"}
    assert mp.post("/v1/orders", json=order_body(), headers=wrong_token).status_code == 401
    assert mp.post("/v1/orders", json=order_body()).status_code == 400  # no idempotency key
    for bad in (
        order_body(amount="24.9"),
        order_body(amount="0.00"),
        order_body(expiration="PT10S"),
        order_body(expiration="PT4H"),
        order_body(reference="has spaces"),
        {**order_body(), "type": "qr"},
    ):
        assert (
            mp.post("/v1/orders", json=bad, headers={"X-Idempotency-Key": str(bad)}).status_code
            == 400
        )
    assert (
        mp.post("/v1/orders", json=order_body(), headers={"X-Idempotency-Key": "a"}).status_code
        == 201
    )
    busy = mp.post(
        "/v1/orders", json=order_body(reference="kiosk-ref-2"), headers={"X-Idempotency-Key": "b"}
    )
    assert busy.status_code == 409


def test_cancel_rules(mp, simulator):
    order = mp.post("/v1/orders", json=order_body(), headers={"X-Idempotency-Key": "k"}).json()
    assert mp.post(f"/v1/orders/{order['id']}/cancel").status_code == 400  # no idempotency key
    canceled = mp.post(f"/v1/orders/{order['id']}/cancel", headers={"X-Idempotency-Key": "c1"})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert (
        mp.post(f"/v1/orders/{order['id']}/cancel", headers={"X-Idempotency-Key": "c1"}).status_code
        == 200
    )
    assert (
        mp.post(f"/v1/orders/{order['id']}/cancel", headers={"X-Idempotency-Key": "c2"}).status_code
        == 409
    )

    second = mp.post(
        "/v1/orders", json=order_body(reference="r2"), headers={"X-Idempotency-Key": "k2"}
    ).json()
    simulator.tap("T1", "take")
    assert (
        mp.post(
            f"/v1/orders/{second['id']}/cancel", headers={"X-Idempotency-Key": "c3"}
        ).status_code
        == 409
    )
    assert mp.get(f"/v1/orders/{second['id']}").json()["status"] == "at_terminal"


def test_terminal_sends_signed_webhooks_in_order(mp, simulator, receiver):
    order = mp.post("/v1/orders", json=order_body(), headers={"X-Idempotency-Key": "k"}).json()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk.cli",
            "tap",
            "T1",
            "--approve",
            "--simulator-url",
            simulator.url,
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert order["id"] in result.stdout and "processed" in result.stdout
    assert (
        mp.get(f"/v1/orders/{order['id']}").json()["transactions"]["payments"][0]["status_detail"]
        == "accredited"
    )
    wait_for(lambda: len(receiver.calls) == 2, timeout=30, what="two webhooks")
    actions = []
    for call in receiver.calls:
        assert f"data.id={order['id']}" in call["path"] and "type=order" in call["path"]
        signature.verify(
            call["headers"]["x-signature"],
            order["id"],
            call["headers"]["x-request-id"],
            WEBHOOK_SECRET,
            300,
            now=time.time(),
        )
        actions.append(json.loads(call["body"])["action"])
    assert actions == ["order.at_terminal", "order.processed"]
    # Nothing waiting on the terminal any more.
    again = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "tap", "T1", "--simulator-url", simulator.url],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "no charge waiting" in again.stderr


def test_expiration_and_faults(mp, simulator, receiver):
    order = mp.post(
        "/v1/orders", json=order_body(expiration="PT30S"), headers={"X-Idempotency-Key": "k"}
    ).json()
    simulator.faults(fail_next=2, fail_status=503)
    assert mp.get(f"/v1/orders/{order['id']}").status_code == 503
    assert mp.get(f"/v1/orders/{order['id']}").status_code == 503
    assert mp.get(f"/v1/orders/{order['id']}").status_code == 200
    # Lifecycle steps the doc does not allow are refused.
    assert (
        simulator.post(f"/_sim/orders/{order['id']}/status", {"status": "refunded"}).status_code
        == 409
    )
    assert (
        simulator.post(f"/_sim/orders/{order['id']}/status", {"status": "expired"}).status_code
        == 200
    )
    assert mp.get(f"/v1/orders/{order['id']}").json()["status"] == "expired"
    wait_for(lambda: len(receiver.calls) == 1, timeout=30, what="expired webhook")
    assert httpx.get(simulator.url + "/", timeout=10).status_code == 200
