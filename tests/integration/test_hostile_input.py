"""Hostile input against a real uvicorn: forged and mangled webhook signatures, huge and deeply
nested bodies, SQL-looking strings in every text field. Never a 500, nothing stored by a refused
request, and what is accepted is stored verbatim."""

from __future__ import annotations

import json
import socket
import time
import uuid
from urllib.parse import quote

import httpx
import pytest

from kiosk import secretbox
from kiosk.webhooks import signature
from tests.support.config import SECRET_KEY, WEBHOOK_SECRET
from tests.support.hostile import AUTH, changed, fingerprint
from tests.support.stack import rows

HOSTILE = [
    "'; DROP TABLE orders; --",
    "%(x)s",
    "%s",
    "a\x00b",
    "\\x00",
    "' OR '1'='1",
    "$1",
    '"; SELECT pg_sleep(10); --',
    "é漢字🙂",
    "{{7*7}}",
    "../../etc/passwd",
    "%",
    "_",
]
NUL = "\x00"


@pytest.fixture
def http(hostile_api, database_url):
    # The admin token: the order endpoints take it (or a device token) like the admin API.
    with httpx.Client(base_url=hostile_api.url, timeout=60, headers=AUTH) as client:
        yield client


@pytest.fixture
def provider_order(http, database_url):
    """An order charged at the simulator: its Mercado Pago order id is what webhooks name."""
    http.put(
        "/admin/products/tea", json={"name": "Tea", "price_cents": 300, "stock": 5}, headers=AUTH
    ).raise_for_status()
    order = http.post("/orders", json={"items": [{"sku": "tea", "quantity": 1}]}).json()
    terminal = f"T-{uuid.uuid4().hex[:12]}"
    intent = http.post(f"/orders/{order['id']}/payment-intents", json={"terminal_id": terminal})
    assert intent.status_code == 201, intent.text
    return intent.json()["provider_order_id"]


def webhook(
    http: httpx.Client,
    data_id: str | None,
    x_signature: str | None,
    *,
    request_id: str | None = "req-1",
    body: bytes | None = None,
    notification_id: int = 1001,
    query: dict | None = None,
) -> httpx.Response:
    if body is None:
        body = json.dumps(
            {
                "id": notification_id,
                "type": "order",
                "action": "order.processed",
                "data": {"id": data_id},
            }
        ).encode()
    headers = {"content-type": "application/json"}
    if x_signature is not None:
        headers["x-signature"] = x_signature.encode("latin-1")  # raw bytes, as a client may send
    if request_id is not None:
        headers["x-request-id"] = request_id
    params = (
        query if query is not None else ({"data.id": data_id, "type": "order"} if data_id else {})
    )
    return http.post("/webhooks/mercadopago", params=params, content=body, headers=headers)


def signed(
    data_id: str | None,
    ts: int | str | None = None,
    request_id: str | None = "req-1",
    secret: str = WEBHOOK_SECRET,
) -> tuple[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return stamp, signature.sign(secret, data_id, request_id, stamp)


def inbox(database_url: str) -> list[dict]:
    return rows(database_url, "SELECT notification_id, resource_id, state FROM webhook_inbox")


# -- webhook signatures ----------------------------------------------------------------------------


def refused_cases(data_id: str) -> list[tuple[str, dict]]:
    ts, v1 = signed(data_id)
    now = int(time.time())
    stale_ts, stale_v1 = signed(data_id, now - 400)  # KIOSK_WEBHOOK_TOLERANCE_SECONDS is 300
    future_ts, future_v1 = signed(data_id, now + 400)
    other = signed(data_id, secret="another-secret")[1]
    return [
        ("no header", {"x_signature": None}),
        ("empty header", {"x_signature": ""}),
        ("only ts", {"x_signature": f"ts={ts}"}),
        ("only v1", {"x_signature": f"v1={v1}"}),
        ("empty ts", {"x_signature": f"ts=,v1={v1}"}),
        ("empty v1", {"x_signature": f"ts={ts},v1="}),
        ("no values", {"x_signature": "ts=,v1="}),
        ("garbage", {"x_signature": "garbage"}),
        ("commas only", {"x_signature": ",,,,"}),
        ("ts not a number", {"x_signature": f"ts=12ab,v1={v1}"}),
        ("ts negative", {"x_signature": f"ts=-{ts},v1={v1}"}),
        ("ts superscript digits", {"x_signature": f"ts=\u00b2\u00b3,v1={v1}"}),
        ("v1 not hex", {"x_signature": f"ts={ts},v1={'z' * 64}"}),
        ("v1 truncated", {"x_signature": f"ts={ts},v1={v1[:-2]}"}),
        ("v1 of another secret", {"x_signature": f"ts={ts},v1={other}"}),
        ("v1 of another ts", {"x_signature": f"ts={int(ts) + 1},v1={v1}"}),
        ("stale ts (replayed)", {"x_signature": f"ts={stale_ts},v1={stale_v1}"}),
        ("future ts", {"x_signature": f"ts={future_ts},v1={future_v1}"}),
        ("other request id", {"x_signature": f"ts={ts},v1={v1}", "request_id": "req-2"}),
        ("no request id", {"x_signature": f"ts={ts},v1={v1}", "request_id": None}),
        (
            "data.id changed",
            {"x_signature": f"ts={ts},v1={v1}", "query": {"data.id": data_id + "X"}},
        ),
        ("data.id missing", {"x_signature": f"ts={ts},v1={v1}", "query": {}}),
        ("duplicated ts, forged first", {"x_signature": f"ts={int(ts) + 5},ts={ts},v1={v1}"}),
        ("duplicated v1, forged first", {"x_signature": f"ts={ts},v1={'0' * 64},v1={v1}"}),
        ("v2 instead of v1", {"x_signature": f"ts={ts},v2={v1}"}),
        ("huge v1", {"x_signature": f"ts={ts},v1={v1 * 100}"}),
    ]


def test_forged_or_mangled_signatures_are_401_and_store_nothing(http, provider_order, database_url):
    before = fingerprint(database_url)
    for name, case in refused_cases(provider_order):
        query = case.pop("query", None)
        response = webhook(http, provider_order, query=query, **case)
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert "detail" in response.json(), name
    assert not changed(before, fingerprint(database_url))


def test_a_correctly_signed_timestamp_that_is_not_a_number_is_401(
    http, provider_order, database_url
):
    # Signed with the real secret, so only the timestamp's own check can refuse it.
    for ts in ("\u00b2\u00b3", "1e9", " 12", "0x10"):
        v1 = signature.sign(WEBHOOK_SECRET, provider_order, "req-1", ts)
        response = webhook(http, provider_order, f"ts={ts},v1={v1}")
        assert response.status_code == 401, (ts, response.status_code, response.text)
    assert inbox(database_url) == []


def test_signature_variants_that_mercado_pago_may_send_are_accepted(
    http, provider_order, database_url
):
    ts, v1 = signed(provider_order)
    lower_ts, lower_v1 = signed(provider_order.lower())
    accepted = [
        ("extra spaces", f"ts = {ts} ,  v1 = {v1}"),
        ("extra parts", f"ts={ts},v1={v1}," + "x=y," * 500),
        ("keys upper case", f"TS={ts},V1={v1}"),
        ("v1 upper case hex", f"ts={ts},v1={v1.upper()}"),
        ("parts swapped", f"v1={v1},ts={ts}"),
        ("unknown extra part", f"ts={ts},v1={v1},v2=whatever"),
        ("data.id signed lowercase", f"ts={lower_ts},v1={lower_v1}"),
    ]
    for i, (name, header) in enumerate(accepted):
        response = webhook(http, provider_order, header, notification_id=2000 + i)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == "received", name
    assert len(inbox(database_url)) == len(accepted)


def test_a_replay_within_the_window_is_a_duplicate(http, provider_order, database_url):
    ts, v1 = signed(provider_order)
    first = webhook(http, provider_order, f"ts={ts},v1={v1}", notification_id=3001)
    again = webhook(http, provider_order, f"ts={ts},v1={v1}", notification_id=3001)
    assert (first.json()["status"], again.json()["status"]) == ("received", "duplicate")
    jobs = rows(database_url, "SELECT count(*) AS n FROM procrastinate_jobs")
    assert len(inbox(database_url)) == 1 and jobs[0]["n"] == 1


# -- huge and deeply nested bodies -----------------------------------------------------------------


def valid_header(data_id: str) -> str:
    ts, v1 = signed(data_id)
    return f"ts={ts},v1={v1}"


def test_webhook_body_too_large_deeply_nested_or_not_json(http, provider_order, database_url):
    before = fingerprint(database_url)
    header = valid_header(provider_order)
    # Within KIOSK_WEBHOOK_MAX_BYTES (4096 here), deeper than Python's recursion limit (1000).
    deep = b'{"id": 1, "type": "order", "data": ' + b"[" * 1900 + b"]" * 1900 + b"}"
    bodies = {
        "too large": (b'{"id": 1, "pad": "' + b"x" * 70_000 + b'"}', 413),
        "nested arrays": (b"[" * 2000 + b"]" * 2000, 400),
        "nested objects": (b'{"a":' * 680 + b"1" + b"}" * 680, 400),
        "nested inside a notification": (deep, 400),
        "not JSON": (b"\xff\xfe not json", 400),
        # PostgreSQL text and jsonb cannot hold NUL: refused as malformed before anything is stored.
        "NUL escape in the id": (
            json.dumps({"id": "n\u0000", "type": "order", "data": {"id": provider_order}}).encode(),
            400,
        ),
        "NUL escape deeper": (
            json.dumps(
                {"id": 7, "type": "order", "x": ["\u0000"], "data": {"id": provider_order}}
            ).encode(),
            400,
        ),
        "a JSON string": (b'"hello"', 400),
        "numbers as id": (json.dumps({"id": 1e308, "type": "order"}).encode(), 400),
        "empty": (b"", 400),
    }
    for name, (body, status) in bodies.items():
        response = webhook(http, provider_order, header, body=body)
        assert response.status_code == status, (name, response.status_code, response.text[:300])
    # Declared larger than the limit: refused before the body is read.
    assert raw_post(
        http, "/webhooks/mercadopago", {"content-length": "100000000", "x-signature": header}, b"{}"
    ).startswith(b"HTTP/1.1 413")
    assert not changed(before, fingerprint(database_url))


def raw_post(http: httpx.Client, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A request httpx would refuse to send (a Content-Length that lies); the status line back."""
    url = httpx.URL(str(http.base_url))
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {url.host}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(4096)


def test_json_api_bodies_huge_deep_or_broken(http, database_url):
    before = fingerprint(database_url)
    cases = [
        ("/orders", b"[" * 50_000 + b"]" * 50_000),
        ("/orders", b'{"items": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("/orders", b'{"items": [' + b'{"sku": "tea", "quantity": 1},' * 200_000 + b"{}]}"),
        ("/orders", b'{"customer_email": "' + b"a" * 5_000_000 + b'"}'),
        ("/orders", b"\x00\x01\x02"),
        ("/admin/exports", b'{"from": ' + b"{" * 1000),
        (
            "/admin/schedules",
            b'{"name": "x", "headers": ' + b'{"a":' * 3000 + b'"b"' + b"}" * 3000 + b"}",
        ),
    ]
    for path, body in cases:
        response = http.post(
            path, content=body, headers={**AUTH, "content-type": "application/json"}
        )
        assert response.status_code in (400, 413, 422), (
            path,
            response.status_code,
            response.text[:300],
        )
    assert not changed(before, fingerprint(database_url))


def test_every_route_refuses_a_body_past_the_api_limit(http, database_url):
    """KIOSK_MAX_BODY_BYTES (1 MiB): 413 whether Content-Length says so or the body streams in
    chunked past it, never read whole, nothing stored."""
    before = fingerprint(database_url)
    big = b'{"items": [' + b'{"sku": "tea", "quantity": 1},' * 40_000 + b"{}]}"  # 1.2 MB
    for path in ("/orders", "/admin/schedules", "/admin/exports", "/admin/jobs/retry"):
        response = http.post(
            path, content=big, headers={**AUTH, "content-type": "application/json"}
        )
        assert response.status_code == 413, (path, response.status_code, response.text[:300])
    assert raw_post(
        http, "/orders", {"content-length": "100000000", "content-type": "application/json"}, b"{}"
    ).startswith(b"HTTP/1.1 413")
    assert chunked_post(http, "/orders", chunks=64, chunk=b"x" * 65_536).startswith(b"HTTP/1.1 413")
    # Under the limit the body is read and judged as usual.
    small = http.post(
        "/orders", content=b'{"items": []}', headers={"content-type": "application/json"}
    )
    assert small.status_code == 422, small.text
    assert not changed(before, fingerprint(database_url))


def chunked_post(http: httpx.Client, path: str, *, chunks: int, chunk: bytes) -> bytes:
    """A body with no Content-Length, sent chunk by chunk until the server stops taking it."""
    url = httpx.URL(str(http.base_url))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(chunks):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused midway: the answer is already there
        return sock.recv(4096)


# -- SQL-looking strings everywhere ----------------------------------------------------------------


def test_sql_looking_strings_in_products_orders_and_intents(http, database_url):
    for i, text in enumerate(HOSTILE):
        sku = f"sku-{i}"
        before = fingerprint(database_url)
        response = http.put(
            f"/admin/products/{sku}",
            headers=AUTH,
            json={"name": text, "price_cents": 100, "stock": 5},
        )
        if NUL in text:
            assert response.status_code == 422, response.text
            assert not changed(before, fingerprint(database_url))
            continue
        assert response.status_code == 201, (text, response.text)
        assert response.json()["name"] == text
        stored = rows(database_url, "SELECT name FROM products WHERE sku = %s", (sku,))
        assert stored == [{"name": text}]
        # The same text where a sku, an email or a terminal id goes: refused, nothing stored.
        before = fingerprint(database_url)
        for body in (
            {"items": [{"sku": text, "quantity": 1}]},
            {"items": [{"sku": sku, "quantity": 1}], "customer_email": text},
        ):
            response = http.post("/orders", json=body)
            assert response.status_code in (409, 422), (body, response.text)
        response = http.put(
            f"/admin/products/{quote(text, safe='')}",
            headers=AUTH,
            json={"name": "x", "price_cents": 1, "stock": 1},
        )
        assert response.status_code in (404, 405, 422), (text, response.status_code)
        response = http.post(f"/orders/{quote(text, safe='')}/cancel")
        assert response.status_code in (404, 405, 422), (text, response.status_code)
        assert not changed(before, fingerprint(database_url))
        order = http.post("/orders", json={"items": [{"sku": sku, "quantity": 1}]})
        assert order.status_code == 201
        before = fingerprint(database_url)
        response = http.post(
            f"/orders/{order.json()['id']}/payment-intents", json={"terminal_id": text}
        )
        if response.status_code == 201:  # "_" is a valid terminal id: stored as sent
            assert response.json()["terminal_id"] == text
        else:
            assert response.status_code == 422, response.text
            assert not changed(before, fingerprint(database_url))
    names = {r["name"] for r in rows(database_url, "SELECT name FROM products")}
    assert names == {t for t in HOSTILE if NUL not in t}
    assert rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"] == len(names)


def stored_body(database_url: str, schedule_id: int) -> str | None:
    token = rows(database_url, "SELECT secrets FROM schedules WHERE id = %s", (schedule_id,))[0][
        "secrets"
    ]
    return secretbox.Keyring([SECRET_KEY]).open(token)["body"]


def test_sql_looking_strings_in_schedules(http, database_url):
    created = 0
    for text in HOSTILE:
        before = fingerprint(database_url)
        # In the name, a header value and the body: stored verbatim (or a NUL refused); the body
        # is a secret, stored encrypted: read back with the key.
        body = {
            "name": f"s {text}",
            "cron": "0 0 * * *",
            "url": "http://127.0.0.1:9/hook",
            "headers": {"X-Note": text},
            "plain_headers": ["X-Note"],
            "body": text,
            "method": "POST",
        }
        response = http.post("/admin/schedules", headers=AUTH, json=body)
        if (
            response.status_code == 422
        ):  # a NUL anywhere; a header value that is not printable ASCII
            assert NUL in text or not text.isascii(), response.text
            assert not changed(before, fingerprint(database_url))
            response = http.post(
                "/admin/schedules", headers=AUTH, json={**body, "headers": {}, "plain_headers": []}
            )
        if NUL in text:
            assert response.status_code == 422, response.text
            assert not changed(before, fingerprint(database_url))
        else:
            assert response.status_code == 201, (text, response.text)
            created += 1
            schedule = response.json()
            assert (schedule["name"], schedule["body"]) == (f"s {text}", "********")
            assert stored_body(database_url, schedule["id"]) == text
            assert schedule["headers"] in ({"X-Note": text}, {})
            patched = http.patch(
                f"/admin/schedules/{schedule['id']}", headers=AUTH, json={"body": text * 2}
            )
            assert (
                patched.status_code == 200 and stored_body(database_url, schedule["id"]) == text * 2
            )
        # In the cron, the URL, the time zone, the method, a header name: refused.
        before = fingerprint(database_url)
        for field, value in (("cron", text), ("url", text), ("timezone", text), ("method", text)):
            response = http.post(
                "/admin/schedules", headers=AUTH, json={**body, "name": f"x{field}", field: value}
            )
            assert response.status_code == 422, (field, text, response.text)
        response = http.get("/admin/schedules/1/runs", headers=AUTH, params={"cursor": text})
        assert response.status_code in (404, 422), response.text
        assert not changed(before, fingerprint(database_url))
        # A header name: a valid HTTP token ("%s", "_") is kept as sent, anything else refused.
        response = http.post(
            "/admin/schedules",
            headers=AUTH,
            json={**body, "name": f"h {text}", "headers": {text: "v"}, "plain_headers": []},
        )
        if response.status_code == 201:
            created += 1
            assert response.json()["headers"] == {text: "********"}  # a secret by default
        else:
            assert response.status_code == 422, response.text
            assert not changed(before, fingerprint(database_url))
    assert rows(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == created


def test_sql_looking_strings_in_exports_and_admin_filters(http, database_url):
    before = fingerprint(database_url)
    for text in HOSTILE:
        response = http.post(
            "/admin/exports", headers=AUTH, json={"from": text, "to": "2026-02-01T00:00:00Z"}
        )
        assert response.status_code == 422, response.text
        for params in (
            {"q": text},
            {"queue": text},
            {"task": text},
            {"status": text},
            {"deferred_after": text},
            {"before": text},
        ):
            response = http.get("/admin/jobs", headers=AUTH, params=params)
            assert response.status_code in (200, 422), (params, response.status_code, response.text)
            if response.status_code == 200:
                assert response.json()["jobs"] == []
        for action in ("retry", "cancel"):
            for field in ("queue", "task", "text"):
                response = http.post(f"/admin/jobs/{action}", headers=AUTH, json={field: text})
                assert response.status_code in (200, 422), (action, field, response.text)
                if response.status_code == 200:
                    assert response.json()["matched"] == 0
        response = http.post(f"/admin/periodic/{quote(text, safe='')}/run", headers=AUTH)
        assert response.status_code in (404, 405), response.text
    # The audit log records actions, also refused ones; nothing else may change.
    diff = changed(before, fingerprint(database_url))
    assert set(diff) <= {"admin_audit"}, diff
    assert rows(database_url, "SELECT to_regclass('orders') IS NOT NULL AS ok")[0]["ok"]


def test_actor_header_with_sql_and_control_characters(http, database_url):
    http.put(
        "/admin/products/tea", json={"name": "Tea", "price_cents": 300, "stock": 5}, headers=AUTH
    ).raise_for_status()
    for text in ("'; DROP TABLE admin_audit; --", "%(x)s", "a\tb", "x" * 500):
        response = http.post(
            "/admin/jobs/retry", headers={**AUTH, "x-kiosk-actor": text}, json={"status": "failed"}
        )
        assert response.status_code == 200, response.text
    assert rows(database_url, "SELECT to_regclass('admin_audit') IS NOT NULL AS ok")[0]["ok"]


def test_unknown_ids_of_every_shape(http, database_url):
    before = fingerprint(database_url)
    for value in (
        "0",
        "-1",
        "1e9",
        "9" * 40,
        "00000000-0000-0000-0000-000000000000",
        str(uuid.uuid4()),
        "%00",
        "null",
        "' OR 1=1 --",
    ):
        for method, path in (
            ("GET", f"/orders/{value}"),
            ("POST", f"/orders/{value}/cancel"),
            ("GET", f"/admin/jobs/{value}"),
            ("POST", f"/admin/jobs/{value}/retry"),
            ("GET", f"/admin/schedules/{value}"),
            ("DELETE", f"/admin/schedules/{value}"),
            ("GET", f"/admin/exports/{value}"),
            ("GET", f"/admin/exports/{value}/download"),
        ):
            response = http.request(method, path, headers=AUTH)
            assert response.status_code in (404, 422), (
                method,
                path,
                response.status_code,
                response.text,
            )
    assert not changed(before, fingerprint(database_url))


def test_dashboard_filters_and_forms_with_sql_and_markup(hostile_api, database_url):
    from tests.support.dashboard import csrf_of, sign_in

    client = sign_in(hostile_api.url)
    texts = [t for t in HOSTILE if NUL not in t] + ["<script>alert(1)</script>"]
    before = fingerprint(database_url)
    try:
        for text in texts:
            for params in (
                {"q": text},
                {"queue": text},
                {"task": text},
                {"status": text},
                {"deferred_after": text},
                {"before": text},
                {"min_attempts": text},
            ):
                page = client.get("/admin/ui/jobs", params=params)
                assert page.status_code == 200, (params, page.status_code, page.text[:300])
                assert "<script>alert(1)</script>" not in page.text
            page = client.get(f"/admin/ui/jobs/{quote(text, safe='')}")
            assert page.status_code in (404, 405, 422), (text, page.status_code)
            csrf = csrf_of(client, "/admin/ui/jobs")
            for form in ({"text": text}, {"queue": text}, {"task": text}, {"status": text}):
                response = client.post("/admin/ui/bulk/cancel", data={**form, "csrf_token": csrf})
                assert response.status_code == 303, (
                    form,
                    response.status_code,
                    response.text[:300],
                )
            response = client.post(
                "/admin/ui/exports", data={"from": text, "to": text, "csrf_token": csrf}
            )
            assert response.status_code == 303, (text, response.status_code)
    finally:
        client.close()
    # Sign-in and bulk actions are audited; nothing else changes.
    diff = changed(before, fingerprint(database_url))
    assert set(diff) <= {"admin_audit"}, diff
