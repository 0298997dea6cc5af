"""Hostile input found on main (issue 12), each against a real uvicorn: spliced signature manifests,
oversized request heads, values logged whole, a client gone mid-body, a huge dashboard login
form, sessions that outlived sign-out, NaN in a webhook body."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid

import httpx
import pytest

from kiosk.dashboard import session
from kiosk.webhooks import signature
from tests.support import Api, child_env, wait_for
from tests.support.config import ADMIN_TOKEN, WEBHOOK_SECRET
from tests.support.dashboard import csrf_of, sign_in
from tests.support.hostile import AUTH, changed, fingerprint
from tests.support.stack import rows

PATH = "/webhooks/mercadopago"


@pytest.fixture(scope="module")
def api(database_url, tmp_path_factory):
    server = Api(child_env(database_url), tmp_path_factory.mktemp("api"))
    yield server
    server.stop()


@pytest.fixture
def http(api):
    with httpx.Client(base_url=api.url, timeout=60, follow_redirects=False) as client:
        yield client


def notification(notification_id: int, data_id: str, kind: str = "payment") -> bytes:
    return json.dumps(
        {"id": notification_id, "type": kind, "action": f"{kind}.updated", "data": {"id": data_id}}
    ).encode()


def post_webhook(
    http: httpx.Client,
    *,
    query_id: str | None,
    request_id: str | None,
    x_signature: str,
    body: bytes,
    kind: str = "payment",
) -> httpx.Response:
    headers = {"content-type": "application/json", "x-signature": x_signature}
    if request_id is not None:
        headers["x-request-id"] = request_id
    params = {"type": kind, **({"data.id": query_id} if query_id is not None else {})}
    return http.post(PATH, params=params, content=body, headers=headers)


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """One sample of GET /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in http.get("/metrics", headers=AUTH).text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def latency_statuses(http: httpx.Client, route: str) -> set[str]:
    text = http.get("/metrics", headers=AUTH).text
    return set(
        re.findall(
            rf'kiosk_http_request_duration_seconds_count{{method="POST",route="{re.escape(route)}",'
            r'status="(\d+)"}',
            text,
        )
    )


# -- signature manifest splicing -------------------------------------------------------------------


def test_a_signature_cannot_be_spliced_into_another_data_id(http, database_url):
    """Signed for data.id=X with request id R, the manifest `id:X;request-id:R;ts:T;` is also the
    manifest of data.id "X;request-id:R" with no request id: that one is refused 401 now."""
    ts = str(int(time.time()))
    v1 = signature.sign(WEBHOOK_SECRET, "123456", "req-abc", ts)
    spliced = "123456;request-id:req-abc"
    assert signature.manifest(spliced, None, ts) == signature.manifest("123456", "req-abc", ts)
    before = fingerprint(database_url)
    response = post_webhook(
        http,
        query_id=spliced,
        request_id=None,
        x_signature=f"ts={ts},v1={v1}",
        body=notification(501, spliced),
    )
    assert response.status_code == 401, response.text
    assert "may not hold" in response.json()["detail"]
    assert not changed(before, fingerprint(database_url))
    # The genuine notification still goes through.
    genuine = post_webhook(
        http,
        query_id="123456",
        request_id="req-abc",
        x_signature=f"ts={ts},v1={v1}",
        body=notification(502, "123456"),
    )
    assert genuine.status_code == 200, genuine.text


@pytest.mark.parametrize(
    "data_id, request_id",
    [
        ("12;34", "req-1"),
        ("12,34", "req-1"),
        ("12:34", "req-1"),
        ("1234", "req;1"),
        ("1234", "req,1"),
        ("1234", "req:1"),
    ],
)
def test_separators_in_data_id_or_request_id_are_refused_even_when_signed(
    http, database_url, data_id, request_id
):
    before = fingerprint(database_url)
    header = signature.header(
        WEBHOOK_SECRET, data_id, request_id
    )  # a correct HMAC of that manifest
    response = post_webhook(
        http,
        query_id=data_id,
        request_id=request_id,
        x_signature=header,
        body=notification(600, data_id),
    )
    assert response.status_code == 401, (data_id, request_id, response.text)
    assert not changed(before, fingerprint(database_url))


# -- oversized request heads and logged values -----------------------------------------------------


def test_a_2mb_header_is_431_before_any_work_and_stays_out_of_the_log(api, http, database_url):
    before = fingerprint(database_url)
    refused_before = metric(http, "kiosk_webhook_notifications_total", outcome="bad_signature")
    log_before = len(api.output())
    huge = "r" * 2_000_000
    response = post_webhook(
        http,
        query_id="123",
        request_id=huge,
        x_signature="ts=1,v1=00",
        body=notification(700, "123"),
    )
    assert response.status_code == 431, response.text[:300]
    assert response.json() == {"detail": "request headers larger than 16384 bytes"}
    # Every route: the API, the dashboard, the health check.
    for method, path in (
        ("POST", "/orders"),
        ("GET", "/admin/login"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    ):
        answer = http.request(method, path, headers={**AUTH, "x-padding": "p" * 20_000})
        assert answer.status_code == 431, (path, answer.status_code)
    # A request target past the limit: 414.
    assert http.get("/healthz", params={"q": "x" * 20_000}).status_code == 414
    assert http.post(PATH, params={"data.id": "1" * 20_000}, content=b"{}").status_code == 414
    # Under the limit, as usual.
    assert http.get("/healthz", headers={"x-padding": "p" * 10_000}).status_code == 200
    # No work: nothing stored, not counted as a webhook, the log grew by a few short lines.
    assert not changed(before, fingerprint(database_url))
    assert (
        metric(http, "kiosk_webhook_notifications_total", outcome="bad_signature") == refused_before
    )
    grown = api.output()[log_before:]
    assert len(grown) < 12_000, len(grown)
    assert "r" * 1001 not in grown and "x" * 1001 not in grown and "1" * 1001 not in grown


def test_request_derived_values_are_clipped_in_the_log(api, http, database_url):
    """A 12 KB x-request-id (under the header limit) with a bad signature: 401, and the warning
    quotes 200 characters of it, not 12,000."""
    log_before = len(api.output())
    request_id = "q" * 12_000
    response = post_webhook(
        http,
        query_id="123",
        request_id=request_id,
        x_signature="ts=1,v1=00",
        body=notification(701, "123"),
    )
    assert response.status_code == 401
    line = wait_for(
        lambda: next(
            (s for s in api.output()[log_before:].splitlines() if "webhook refused" in s), None
        ),
        timeout=10,
        what="the refusal's warning",
    )
    assert "q" * 200 in line and "q" * 201 not in line and "[11800 more characters]" in line


# -- a client gone in the middle of a webhook body -------------------------------------------------


def test_a_client_that_disconnects_mid_body_is_a_client_abort(api, http, database_url):
    aborts = metric(http, "kiosk_webhook_notifications_total", outcome="client_abort")
    log_before = len(api.output())
    url = httpx.URL(api.url)
    for _ in range(3):
        with socket.create_connection((url.host, url.port), timeout=10) as sock:
            sock.sendall(
                (
                    f"POST {PATH}?data.id=123&type=payment HTTP/1.1\r\nHost: {url.host}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n"
                    "x-signature: ts=1,v1=00\r\n\r\n"
                ).encode()
                + b'{"id": 1, "type"'
            )
            time.sleep(0.05)  # let the server start reading the body before the client goes
    wait_for(
        lambda: (
            metric(http, "kiosk_webhook_notifications_total", outcome="client_abort") == aborts + 3
        ),
        timeout=20,
        what="three client aborts counted",
    )
    log = api.output()[log_before:]
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
    assert "500" not in latency_statuses(http, PATH)
    assert "499" in latency_statuses(http, PATH)
    assert rows(database_url, "SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == 0


# -- NaN and Infinity in a signed webhook body -----------------------------------------------------


def test_nan_and_infinity_in_a_signed_body_are_400_before_the_batch(api, http, database_url):
    log_before = len(api.output())
    malformed = metric(http, "kiosk_webhook_notifications_total", outcome="malformed")
    literals = ["NaN", "Infinity", "-Infinity", "1e200000", "1e-20000"]
    for n, literal in enumerate(literals):
        request_id = str(uuid.uuid4())
        body = b'{"id": %d, "type": "payment", "data": {"id": "99"}, "amount": %s}' % (
            800 + n,
            literal.encode(),
        )
        response = post_webhook(
            http,
            query_id="99",
            request_id=request_id,
            x_signature=signature.header(WEBHOOK_SECRET, "99", request_id),
            body=body,
        )
        assert response.status_code == 400, (literal, response.status_code, response.text)
    assert metric(
        http, "kiosk_webhook_notifications_total", outcome="malformed"
    ) == malformed + len(literals)
    assert rows(database_url, "SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == 0
    assert "one by one" not in api.output()[log_before:]
    # A number a double holds is stored as sent.
    request_id = str(uuid.uuid4())
    body = b'{"id": 850, "type": "payment", "data": {"id": "99"}, "amount": 1.5e300}'
    ok = post_webhook(
        http,
        query_id="99",
        request_id=request_id,
        x_signature=signature.header(WEBHOOK_SECRET, "99", request_id),
        body=body,
    )
    assert ok.status_code == 200, ok.text


# -- dashboard: the login form's size, sessions that end -------------------------------------------


def test_a_dashboard_login_over_64_kib_is_413(http, database_url):
    before = fingerprint(database_url)
    big = {"token": ADMIN_TOKEN, "operator": "ana", "pad": "x" * 70_000}
    response = http.post("/admin/login", data=big)
    assert response.status_code == 413, (response.status_code, response.text[:300])
    assert "too large" in response.text and "set-cookie" not in response.headers
    # Streamed in without a Content-Length: the same.
    chunks = iter([b"pad=" + b"y" * 40_000, b"y" * 40_000])
    streamed = http.post(
        "/admin/login",
        content=chunks,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413, streamed.status_code
    assert not changed(before, fingerprint(database_url))


def test_a_client_gone_mid_login_form_is_no_server_error(api, http):
    log_before = len(api.output())
    url = httpx.URL(api.url)
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /admin/login HTTP/1.1\r\nHost: {url.host}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n"
            ).encode()
            + b"token=abc"
        )
        time.sleep(0.05)  # let the server start reading the body before the client goes
    # Timed by the latency middleware whatever happened: 400, never 500.
    wait_for(
        lambda: latency_statuses(http, "/admin/login") & {"400", "500"},
        timeout=20,
        what="the aborted sign-in to be handled",
    )
    log = api.output()[log_before:]
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
    assert "500" not in latency_statuses(http, "/admin/login")


def test_signing_out_ends_the_session_on_the_server(api, database_url):
    browser = sign_in(api.url, "ana")
    stolen = browser.cookies[session.COOKIE]  # a copy, as malware or a shared machine would keep
    try:
        assert browser.get("/admin/").status_code == 200
        assert rows(database_url, "SELECT actor FROM dashboard_sessions") == [{"actor": "ana"}]
        stored = rows(database_url, "SELECT id_hash FROM dashboard_sessions")[0]["id_hash"]
        assert stolen.split(".")[0].encode() not in bytes(stored)  # only a hash of the id is kept
        out = browser.post("/admin/logout", data={"csrf_token": csrf_of(browser)})
        assert out.status_code == 303 and out.headers["location"] == "/admin/login"
    finally:
        browser.close()
    with httpx.Client(
        base_url=api.url, follow_redirects=False, cookies={session.COOKIE: stolen}
    ) as thief:
        page = thief.get("/admin/")
        assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")
    assert rows(database_url, "SELECT count(*) AS n FROM dashboard_sessions")[0]["n"] == 0


def test_sign_out_everywhere_ends_every_session_and_is_audited(api, database_url):
    ana, bob = sign_in(api.url, "ana"), sign_in(api.url, "bob")
    try:
        assert ana.get("/admin/").status_code == bob.get("/admin/").status_code == 200
        page = bob.get("/admin/")
        assert 'name="everywhere" value="yes"' in page.text and "Sign out everywhere" in page.text
        out = bob.post("/admin/logout", data={"csrf_token": csrf_of(bob), "everywhere": "yes"})
        assert out.status_code == 303
        assert "Signed out everywhere (2 sessions ended)." in bob.get("/admin/login").text
        for client in (ana, bob):
            assert client.get("/admin/").status_code == 303
    finally:
        ana.close()
        bob.close()
    audit = rows(database_url, "SELECT actor, action, target, details FROM admin_audit")
    assert audit == [
        {
            "actor": "bob",
            "action": "dashboard.sign_out_everywhere",
            "target": "dashboard_sessions",
            "details": {"ended": 2},
        }
    ]


def test_a_new_admin_token_ends_every_session(database_url, tmp_path):
    """Cookies made under the old token fail their HMAC; the rows made with it never match and are
    deleted at the next sign-in, so going back to the old token does not revive them."""
    other = "another-admin-token-0123456789"

    def server(token: str) -> Api:
        return Api(child_env(database_url, KIOSK_ADMIN_TOKEN=token), tmp_path)

    first = server(ADMIN_TOKEN)
    try:
        old = sign_in(first.url, "ana")
        old_cookie = old.cookies[session.COOKIE]
        old.close()
    finally:
        first.stop()
    rotated = server(other)
    try:
        with httpx.Client(
            base_url=rotated.url, follow_redirects=False, cookies={session.COOKIE: old_cookie}
        ) as client:
            assert client.get("/admin/").status_code == 303
            login = client.post("/admin/login", data={"token": other, "operator": "bob"})
            assert login.status_code == 303
        assert rows(database_url, "SELECT actor FROM dashboard_sessions") == [{"actor": "bob"}]
    finally:
        rotated.stop()
    back = server(ADMIN_TOKEN)
    try:
        with httpx.Client(
            base_url=back.url, follow_redirects=False, cookies={session.COOKIE: old_cookie}
        ) as client:
            assert client.get("/admin/").status_code == 303
    finally:
        back.stop()
