"""Kiosk devices against a real uvicorn, PostgreSQL and the Mercado Pago simulator: the admin API,
tokens stored hashed, 401/403/404 on the order endpoints, revocation, the admin token on any
order and terminal, the open-order limit and the failed-authentication limit (429 with
Retry-After), the audit log and the dashboard page."""

from __future__ import annotations

import hashlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import Api, wait_for
from tests.support.config import ADMIN_TOKEN
from tests.support.dashboard import csrf_of, sign_in
from tests.support.stack import rows

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORDER = {"items": [{"sku": "tea", "quantity": 1}], "customer_email": "ana@example.com"}


@pytest.fixture(scope="module")
def stack_env(stack_env):
    """The stack plugin's, with a limit this module's 401s never reach."""
    # The failed-authentication limit has its own API process below.
    return {**stack_env, "KIOSK_AUTH_FAILURE_LIMIT": "10000"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_device(http: httpx.Client, name: str, terminals: list[str], actor: str = "ops") -> dict:
    response = http.post(
        "/admin/devices",
        json={"name": name, "terminal_ids": terminals},
        headers={**ADMIN, "X-Kiosk-Actor": actor},
    )
    assert response.status_code == 201, response.text
    return response.json()


def audit(database_url: str, action: str) -> list[dict]:
    return rows(
        database_url,
        "SELECT actor, action, target, details, remote_addr FROM admin_audit "
        "WHERE action = %s ORDER BY id",
        (action,),
    )


def test_devices_are_created_listed_and_stored_hashed(kiosk, database_url):
    http = kiosk.http
    assert (
        http.post(
            "/admin/devices",
            json={"name": "x", "terminal_ids": ["T1"]},
            headers={"Authorization": "Bearer nope"},
        ).status_code
        == 401
    )
    new = create_device(http, "front door", ["TERM_A", "TERM_B", "TERM_A"], actor="ana")
    assert set(new) == {"id", "name", "terminal_ids", "token", "created_at"}
    assert new["terminal_ids"] == ["TERM_A", "TERM_B"]  # duplicates dropped
    token = new["token"]
    assert token.startswith("kdt_") and len(token) >= 4 + 43  # 32 random bytes, url-safe

    # Stored as a SHA-256, the token nowhere in the table.
    stored = rows(database_url, "SELECT token_hash, d::text AS whole FROM devices d")
    assert stored[0]["token_hash"] == hashlib.sha256(token.encode()).digest()
    assert token not in stored[0]["whole"] and token[4:] not in stored[0]["whole"]

    listed = http.get("/admin/devices", headers=ADMIN)
    assert listed.status_code == 200
    assert listed.json() == {
        "devices": [
            {
                "id": new["id"],
                "name": "front door",
                "terminal_ids": ["TERM_A", "TERM_B"],
                "created_at": listed.json()["devices"][0]["created_at"],
                "revoked_at": None,
                "open_orders": 0,
            }
        ],
        "next_cursor": None,
    }
    assert token not in listed.text and "token" not in listed.json()["devices"][0]

    # An active name is taken; bad names and terminal ids are refused; nothing stored by a refusal.
    assert (
        http.post(
            "/admin/devices", json={"name": "front door", "terminal_ids": ["T"]}, headers=ADMIN
        ).status_code
        == 409
    )
    for body in (
        {"name": "", "terminal_ids": ["T"]},
        {"name": "x", "terminal_ids": []},
        {"name": "x", "terminal_ids": ["bad id!"]},
        {"name": "a\nb", "terminal_ids": ["T"]},
        {"name": "x" * 101, "terminal_ids": ["T"]},
        {"name": "x"},
    ):
        response = http.post("/admin/devices", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert "detail" in response.json()
    assert len(rows(database_url, "SELECT id FROM devices")) == 1

    # Audited with the actor, never with the token.
    entries = audit(database_url, "device.create")
    assert [(e["actor"], e["target"]) for e in entries] == [("ana", f"device:{new['id']}")]
    assert entries[0]["details"] == {"name": "front door", "terminal_ids": ["TERM_A", "TERM_B"]}
    assert token not in str(rows(database_url, "SELECT * FROM admin_audit"))


def test_order_endpoints_want_a_device_or_the_admin_token(kiosk, database_url):
    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 1})  # the admin token
    calls = [
        ("POST", "/orders", ORDER),
        ("GET", f"/orders/{order['id']}", None),
        ("POST", f"/orders/{order['id']}/cancel", None),
        ("POST", f"/orders/{order['id']}/payment-intents", {"terminal_id": "T1"}),
    ]
    with httpx.Client(base_url=kiosk.url, timeout=30) as anon:
        for headers in (
            {},
            bearer("kdt_" + "A" * 43),
            bearer("not-a-token"),
            bearer(ADMIN_TOKEN + "x"),
            {"Authorization": "Basic " + ADMIN_TOKEN},
        ):
            for method, path, body in calls:
                response = anon.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "detail" in response.json()
        assert anon.get("/products").status_code == 200  # public
    assert kiosk.get(order["id"])["status"] == "pending_payment" and kiosk.stock("tea") == 4
    assert rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"] == 1


def test_a_device_sees_and_acts_on_its_own_orders_and_terminals_only(kiosk, sim, database_url):
    kiosk.product("tea", stock=10)
    a = create_device(kiosk.http, "kiosk A", ["TERM_A"])
    b = create_device(kiosk.http, "kiosk B", ["TERM_B"])
    with (
        httpx.Client(base_url=kiosk.url, timeout=30, headers=bearer(a["token"])) as dev_a,
        httpx.Client(base_url=kiosk.url, timeout=30, headers=bearer(b["token"])) as dev_b,
    ):
        created = dev_a.post("/orders", json=ORDER)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        assert rows(database_url, "SELECT device_id FROM orders WHERE id = %s", (order_id,)) == [
            {"device_id": a["id"]}
        ]
        assert dev_a.get(f"/orders/{order_id}").status_code == 200

        # Another device: as if the order did not exist, and nothing changes.
        missing = dev_b.get(f"/orders/{uuid.uuid4()}")
        other = dev_b.get(f"/orders/{order_id}")
        assert other.status_code == missing.status_code == 404
        assert other.json()["detail"] == f"order {order_id} not found"
        assert dev_b.post(f"/orders/{order_id}/cancel").status_code == 404
        assert (
            dev_b.post(
                f"/orders/{order_id}/payment-intents", json={"terminal_id": "TERM_B"}
            ).status_code
            == 404
        )
        # A terminal not bound to the device: 403, even on its own order.
        refused = dev_a.post(f"/orders/{order_id}/payment-intents", json={"terminal_id": "TERM_B"})
        assert refused.status_code == 403 and "TERM_B" in refused.json()["detail"]
        assert (
            dev_b.post(
                f"/orders/{order_id}/payment-intents", json={"terminal_id": "TERM_A"}
            ).status_code
            == 403
        )
        assert sim.get("/_sim/orders") == []
        assert kiosk.get(order_id)["status"] == "pending_payment"

        # Its own terminal: charged.
        intent = dev_a.post(f"/orders/{order_id}/payment-intents", json={"terminal_id": "TERM_A"})
        assert intent.status_code == 201, intent.text
        assert [o["config"]["point"]["terminal_id"] for o in sim.get("/_sim/orders")] == ["TERM_A"]

        # The admin token reads any order, and charges any order on any terminal.
        admin_order = kiosk.order({"tea": 1})
        assert dev_a.get(f"/orders/{admin_order['id']}").status_code == 404  # no device's order
        b_order = dev_b.post("/orders", json=ORDER).json()
        assert kiosk.http.get(f"/orders/{b_order['id']}").status_code == 200
        paid_by_admin = kiosk.pay(b_order["id"], terminal_id="ANY_TERMINAL_9")
        assert paid_by_admin.status_code == 201, paid_by_admin.text
        # and cancels any order (202: the charge is on the terminal).
        assert kiosk.cancel(b_order["id"]).status_code in (200, 202)
        assert dev_a.post(f"/orders/{order_id}/cancel").status_code in (200, 202)


def test_a_revoked_device_is_refused_at_once(kiosk, database_url):
    kiosk.product("tea", stock=5)
    device = create_device(kiosk.http, "lobby", ["TERM_L"])
    with httpx.Client(base_url=kiosk.url, timeout=30, headers=bearer(device["token"])) as dev:
        order = dev.post("/orders", json=ORDER)
        assert order.status_code == 201
        gone = kiosk.http.delete(f"/admin/devices/{device['id']}", headers={"X-Kiosk-Actor": "bob"})
        assert gone.status_code == 204 and gone.content == b""
        for response in (
            dev.post("/orders", json=ORDER),
            dev.get(f"/orders/{order.json()['id']}"),
            dev.post(f"/orders/{order.json()['id']}/cancel"),
        ):
            assert response.status_code == 401, response.text
    # Again: 204 and no second entry; an unknown device: 404; without the admin token: 401.
    assert kiosk.http.delete(f"/admin/devices/{device['id']}").status_code == 204
    assert kiosk.http.delete("/admin/devices/999999").status_code == 404
    with httpx.Client(base_url=kiosk.url, timeout=30) as anon:
        assert anon.delete(f"/admin/devices/{device['id']}").status_code == 401
        assert anon.get("/admin/devices").status_code == 401
    listed = kiosk.http.get("/admin/devices").json()["devices"]
    assert listed[0]["revoked_at"] is not None
    entries = audit(database_url, "device.revoke")
    assert [(e["actor"], e["target"]) for e in entries] == [("bob", f"device:{device['id']}")]
    # The name is free again for a new device.
    assert create_device(kiosk.http, "lobby", ["TERM_L"])["id"] != device["id"]
    # Its order stays, readable and cancellable by the admin.
    assert kiosk.cancel(order.json()["id"]).status_code == 200


def test_a_device_holds_at_most_five_unpaid_orders(kiosk, database_url):
    kiosk.product("tea", stock=100)
    device = create_device(kiosk.http, "busy", ["TERM_X"])
    with httpx.Client(base_url=kiosk.url, timeout=30, headers=bearer(device["token"])) as dev:
        orders = [dev.post("/orders", json=ORDER) for _ in range(5)]
        assert [o.status_code for o in orders] == [201] * 5
        refused = dev.post("/orders", json=ORDER)
        assert refused.status_code == 429, refused.text
        assert "5 unpaid orders" in refused.json()["detail"]
        # Retry-After: when the first of them expires (KIOSK_ORDER_TTL, 1800 s).
        assert 1700 <= int(refused.headers["retry-after"]) <= 1800
        assert kiosk.stock("tea") == 95  # the refused order took nothing
        assert kiosk.http.get("/admin/devices").json()["devices"][0]["open_orders"] == 5
        # The admin token has no such limit.
        assert kiosk.http.post("/orders", json=ORDER).status_code == 201
        # A cancelled order frees its slot; so does an order past its expiry time.
        assert dev.post(f"/orders/{orders[0].json()['id']}/cancel").status_code == 200
        assert dev.post("/orders", json=ORDER).status_code == 201
        assert dev.post("/orders", json=ORDER).status_code == 429
        rows(
            database_url,
            "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = %s RETURNING id",
            (orders[1].json()["id"],),
        )
        assert dev.post("/orders", json=ORDER).status_code == 201

    # Concurrent creates by one device never overshoot the limit.
    racer = create_device(kiosk.http, "racer", ["TERM_R"])
    barrier = threading.Barrier(12)

    def create(_: int) -> int:
        with httpx.Client(base_url=kiosk.url, timeout=60, headers=bearer(racer["token"])) as client:
            barrier.wait()
            return client.post("/orders", json=ORDER).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = sorted(pool.map(create, range(12)))
    assert codes == [201] * 5 + [429] * 7
    assert (
        rows(database_url, "SELECT count(*) AS n FROM orders WHERE device_id = %s", (racer["id"],))[
            0
        ]["n"]
        == 5
    )


def test_repeated_failed_authentication_from_one_address_is_429(stack_env, database_url, tmp_path):
    server = Api(
        {**stack_env, "KIOSK_AUTH_FAILURE_LIMIT": "3", "KIOSK_AUTH_FAILURE_WINDOW_SECONDS": "2"},
        tmp_path,
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            unknown = f"/orders/{uuid.uuid4()}"
            assert http.get(unknown, headers=ADMIN).status_code == 404  # success counts nothing
            for headers in ({}, bearer("kdt_guess1"), bearer("guess2")):
                assert http.get(unknown, headers=headers).status_code == 401
            refused = http.get(unknown, headers=bearer("kdt_guess3"))
            assert refused.status_code == 429, refused.text
            assert 1 <= int(refused.headers["retry-after"]) <= 2
            # Refused before the token is looked at: even the right one waits.
            assert http.post("/orders", json=ORDER, headers=ADMIN).status_code == 429
            assert http.get("/products").status_code == 200  # public routes are not limited
            # Once the failures leave the window, the right token works again.
            wait_for(
                lambda: http.get(unknown, headers=ADMIN).status_code == 404,
                timeout=10,
                what="the failed-authentication window to pass",
            )
    finally:
        server.stop()


def test_dashboard_devices_page_creates_shows_the_token_once_and_revokes(api, database_url):
    client = sign_in(api.url, "carla")
    try:
        page = client.get("/admin/ui/devices")
        assert page.status_code == 200 and "No device yet" in page.text
        assert 'href="/admin/ui/devices" aria-current="page"' in page.text  # in the nav
        csrf = csrf_of(client, "/admin/ui/devices")

        # Without the CSRF token: refused, nothing created.
        forged = client.post("/admin/ui/devices", data={"name": "evil", "terminal_ids": "T1"})
        assert forged.status_code == 403
        assert rows(database_url, "SELECT count(*) AS n FROM devices")[0]["n"] == 0

        created = client.post(
            "/admin/ui/devices",
            data={"csrf_token": csrf, "name": "hall <b>", "terminal_ids": "TERM_1, TERM_2"},
        )
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        token = created.text.split('id="device-token">', 1)[1].split("<", 1)[0]
        assert token.startswith("kdt_")
        assert "hall &lt;b&gt;" in created.text and "hall <b>" not in created.text  # escaped
        device = rows(database_url, "SELECT id, token_hash, terminal_ids FROM devices")[0]
        assert device["token_hash"] == hashlib.sha256(token.encode()).digest()
        assert device["terminal_ids"] == ["TERM_1", "TERM_2"]
        assert (
            httpx.get(f"{api.url}/orders/{uuid.uuid4()}", headers=bearer(token)).status_code == 404
        )

        # Shown once: the page never shows it again.
        again = client.get("/admin/ui/devices")
        assert token not in again.text and "hall &lt;b&gt;" in again.text and "TERM_2" in again.text

        # Refused input: the reason on the page, nothing stored.
        bad = client.post(
            "/admin/ui/devices", data={"csrf_token": csrf, "name": "x", "terminal_ids": "bad!"}
        )
        assert bad.status_code == 422 and "not a terminal id" in bad.text
        taken = client.post(
            "/admin/ui/devices", data={"csrf_token": csrf, "name": "hall <b>", "terminal_ids": "T"}
        )
        assert taken.status_code == 409 and "already named" in taken.text
        assert rows(database_url, "SELECT count(*) AS n FROM devices")[0]["n"] == 1

        # Revoke: needs the confirmation and the CSRF token.
        path = f"/admin/ui/devices/{device['id']}/revoke"
        unconfirmed = client.post(path, data={"csrf_token": csrf, "next": "/admin/ui/devices"})
        assert unconfirmed.status_code == 303
        assert client.get("/admin/ui/devices").text.count("Tick the box") == 1
        assert client.post(path, data={"confirm": "yes"}).status_code == 403
        assert rows(database_url, "SELECT revoked_at FROM devices")[0]["revoked_at"] is None
        done = client.post(
            path, data={"csrf_token": csrf, "confirm": "yes", "next": "/admin/ui/devices"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/admin/ui/devices"
        after = client.get("/admin/ui/devices")
        assert "revoked: its token is refused from now on" in after.text and "revoked" in after.text
        assert (
            httpx.get(f"{api.url}/orders/{uuid.uuid4()}", headers=bearer(token)).status_code == 401
        )

        entries = rows(database_url, "SELECT actor, action, target FROM admin_audit ORDER BY id")
        assert entries == [
            {"actor": "carla", "action": "device.create", "target": f"device:{device['id']}"},
            {"actor": "carla", "action": "device.revoke", "target": f"device:{device['id']}"},
        ]
    finally:
        client.close()


def test_kiosk_dev_keeps_its_device_while_the_token_works(api, database_url, tmp_path):
    from kiosk import devserver

    token = devserver.dev_device(api.url, ADMIN_TOKEN, tmp_path)
    assert (tmp_path / "dev-device-token").read_text() == token
    assert oct((tmp_path / "dev-device-token").stat().st_mode & 0o777) == "0o600"
    assert devserver.dev_device(api.url, ADMIN_TOKEN, tmp_path) == token  # the next run: the same
    assert len(rows(database_url, "SELECT id FROM devices")) == 1
    # Its token lost (or another database): the old dev device is revoked, a new one made.
    (tmp_path / "dev-device-token").write_text("kdt_lost")
    fresh = devserver.dev_device(api.url, ADMIN_TOKEN, tmp_path)
    assert fresh != token
    devices = rows(
        database_url,
        "SELECT name, terminal_ids, revoked_at IS NOT NULL AS revoked FROM devices ORDER BY id",
    )
    assert devices == [
        {
            "name": "kiosk dev",
            "terminal_ids": ["KIOSK_TERMINAL_1", "KIOSK_TERMINAL_2"],
            "revoked": True,
        },
        {
            "name": "kiosk dev",
            "terminal_ids": ["KIOSK_TERMINAL_1", "KIOSK_TERMINAL_2"],
            "revoked": False,
        },
    ]
    assert [e["actor"] for e in audit(database_url, "device.create")] == ["kiosk-dev", "kiosk-dev"]
