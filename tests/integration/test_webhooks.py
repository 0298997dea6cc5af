"""POST /webhooks/mercadopago against a real uvicorn: refusals store nothing; accepted notifications
are stored with their job in one transaction; duplicates and bursts collapse; order is monotonic."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import wait_for
from tests.support.stack import TERMINAL, jobs, notify, rows

TASK = "payments.process_notification"


def stored(database_url):
    inbox = rows(database_url, "SELECT count(*) AS n FROM webhook_inbox")[0]["n"]
    return inbox, len(jobs(database_url, TASK))


def charge(kiosk, sim):
    """An order with an intent on the terminal; simulator webhooks off, so the test sends them."""
    kiosk.product("tea", price_cents=300, stock=5)
    order = kiosk.order({"tea": 1})
    sim.webhooks(False)
    intent = kiosk.pay(order["id"]).json()
    return order, intent


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("unsigned", 401),
        ("bad signature", 401),
        ("wrong secret", 401),
        ("stale", 401),
        ("future", 401),
        ("malformed", 400),
        ("not an object", 400),
        ("ids differ", 400),
        ("oversized", 413),
        ("oversized, no length", 413),
    ],
)
def test_refused_requests_store_nothing(case, status, kiosk, sim, database_url):
    order, intent = charge(kiosk, sim)
    data_id = intent["provider_order_id"]
    url = f"{kiosk.url}/webhooks/mercadopago"
    if case == "unsigned":
        response = httpx.post(url, params={"data.id": data_id}, json={"id": 1, "type": "order"})
    elif case == "bad signature":
        response = notify(
            kiosk.url, data_id, 1, headers={"x-signature": f"ts={int(time.time())},v1={'ab' * 32}"}
        )
    elif case == "wrong secret":
        response = notify(kiosk.url, data_id, 1, secret="not-the-secret")
    elif case == "stale":
        response = notify(kiosk.url, data_id, 1, ts=int(time.time()) - 301)
    elif case == "future":
        response = notify(
            kiosk.url, data_id, 1, ts=int(time.time()) + 600
        )  # far outside the window
    elif case == "malformed":
        response = notify(kiosk.url, data_id, 1, body=b'{"id": 1, "type": ')
    elif case == "not an object":
        response = notify(kiosk.url, data_id, 1, body=b"[1, 2]")
    elif case == "ids differ":
        response = notify(
            kiosk.url, data_id, 1, body=b'{"id": 1, "type": "order", "data": {"id": "ORD0OTHER"}}'
        )
    elif case == "oversized":
        response = notify(kiosk.url, data_id, 1, body=b'{"id": 1, "pad": "' + b"x" * 5000 + b'"}')
    else:

        def chunks():
            for _ in range(10):
                yield b"x" * 1000

        response = httpx.post(
            url,
            params={"data.id": data_id},
            content=chunks(),
            headers={"x-signature": "ts=1,v1=00"},
        )
    assert response.status_code == status, response.text
    assert "detail" in response.json()
    assert stored(database_url) == (0, 0)


def test_unknown_order_is_acknowledged_and_read_by_a_job(kiosk, database_url):
    """An order no intent knows by id may be ours (a create whose answer was lost): its job reads
    it and matches its external_reference, or marks it ignored (tests/integration/test_money.py)."""
    response = notify(kiosk.url, "ORD0NOTOURS", 424242)
    assert response.status_code == 200 and response.json() == {"status": "received"}
    (row,) = rows(database_url, "SELECT state, resource_id, job_id FROM webhook_inbox")
    (job,) = jobs(database_url, TASK)
    assert row == {"state": "received", "resource_id": "ORD0NOTOURS", "job_id": job["id"]}
    assert job["lock"] == job["queueing_lock"] == "mp-order-ORD0NOTOURS"
    # Other notification types are kept and ignored too.
    other = notify(
        kiosk.url,
        "12345",
        424243,
        body=b'{"id": 424243, "type": "payment", "data": {"id": "12345"}}',
    )
    assert other.status_code == 200 and other.json() == {"status": "ignored"}


def test_webhook_stores_and_defers_without_calling_the_provider(kiosk, sim, database_url):
    order, intent = charge(kiosk, sim)
    before = len(sim.get("/_sim/requests"))
    response = notify(kiosk.url, intent["provider_order_id"], 5001, action="order.at_terminal")
    assert response.status_code == 200 and response.json() == {"status": "received"}
    assert len(sim.get("/_sim/requests")) == before
    (row,) = rows(database_url, "SELECT * FROM webhook_inbox")
    assert (
        row["notification_id"] == "5001"
        and row["type"] == "order"
        and row["action"] == "order.at_terminal"
    )
    assert (
        row["resource_id"] == intent["provider_order_id"]
        and row["request_id"]
        and row["state"] == "received"
    )
    (job,) = jobs(database_url, TASK)
    assert row["job_id"] == job["id"] and job["status"] == "todo"
    assert job["queueing_lock"] == f"mp-order-{intent['provider_order_id']}"
    assert job["lock"] == f"order-{order['id']}"
    assert job["args"] == {"provider_order_id": intent["provider_order_id"]}


def test_twenty_concurrent_copies_make_one_row_one_job_one_email(
    kiosk, sim, smtp, hook, start_worker, database_url
):
    order, intent = charge(kiosk, sim)
    sim.tap(TERMINAL, "approve")  # processed at Mercado Pago, no webhook sent
    data_id = intent["provider_order_id"]
    barrier = threading.Barrier(20)

    def send(_):
        with httpx.Client() as client:
            barrier.wait()
            return notify(kiosk.url, data_id, 777000111, client=client).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(send, range(20)))
    assert codes == [200] * 20
    assert stored(database_url) == (1, 1)

    start_worker()
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    wait_for(lambda: len(smtp.messages) == 1 and len(hook.calls) == 1, timeout=60, what="one email")
    # A late redelivery of the same notification is still a no-op.
    assert notify(kiosk.url, data_id, 777000111).json() == {"status": "duplicate"}
    assert stored(database_url) == (1, 1)
    # Exactly one job of each kind ever existed, and all are done.
    for task in (TASK, "orders.send_receipt", "orders.notify_paid"):
        assert [j["status"] for j in jobs(database_url, task)] == ["succeeded"], task
    assert len(smtp.messages) == 1 and len(hook.calls) == 1


def test_burst_collapses_and_out_of_order_notifications_never_go_backwards(
    kiosk, sim, smtp, start_worker, database_url
):
    order, intent = charge(kiosk, sim)
    data_id = intent["provider_order_id"]
    sim.tap(TERMINAL, "approve")
    # Distinct notifications, newest first: processed, then the older at_terminal and created.
    for number, action in ((3, "order.processed"), (2, "order.at_terminal"), (1, "order.created")):
        assert notify(kiosk.url, data_id, number, action=action).status_code == 200
    # One waiting job per provider order, however many notifications.
    assert stored(database_url) == (3, 1)
    start_worker()
    start_worker()
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    wait_for(lambda: len(smtp.messages) == 1, timeout=30, what="one email")

    # Later, while paid: stale hints (at_terminal, failed) re-read Mercado Pago and change nothing.
    for number, action in ((4, "order.at_terminal"), (5, "order.failed")):
        notify(kiosk.url, data_id, number, action=action).raise_for_status()
    wait_for(
        lambda: (
            {j["status"] for j in jobs(database_url, TASK)} == {"succeeded"}
            and len(jobs(database_url, TASK)) >= 2
        ),
        timeout=60,
        what="jobs done",
    )
    paid = kiosk.get(order["id"])
    assert paid["status"] == "paid" and paid["payment_intents"][0]["status"] == "processed"
    states = {r["state"] for r in rows(database_url, "SELECT state FROM webhook_inbox")}
    assert states == {"processed"}
    assert len(smtp.messages) == 1


def test_old_senders_lowercased_data_id_is_accepted(kiosk, sim, database_url):
    order, intent = charge(kiosk, sim)
    data_id = intent["provider_order_id"]
    from kiosk.webhooks import signature
    from tests.support.config import WEBHOOK_SECRET

    ts = int(time.time())
    v1 = signature.sign(WEBHOOK_SECRET, data_id.lower(), "req-1", str(ts))
    response = notify(
        kiosk.url,
        data_id,
        31337,
        headers={"x-signature": f"ts={ts},v1={v1}", "x-request-id": "req-1"},
    )
    assert response.status_code == 200
    assert stored(database_url) == (1, 1)


def test_retry_while_a_newer_job_waits_does_not_get_stuck(kiosk, sim, start_worker, database_url):
    """procrastinate#1543: retrying a job whose queueing lock a newer job holds must not wedge."""
    order, intent = charge(kiosk, sim)
    data_id = intent["provider_order_id"]
    sim.tap(TERMINAL, "approve")
    # The first read is slow and then fails: a second notification arrives while it runs.
    sim.faults(fail_next=1, fail_status=500, delay_next=1, delay_seconds=1.5, method="GET")
    notify(kiosk.url, data_id, 61, action="order.at_terminal").raise_for_status()
    start_worker()
    wait_for(
        lambda: any(r["method"] == "GET" for r in sim.get("/_sim/requests")),
        timeout=60,
        what="the first read",
    )
    notify(kiosk.url, data_id, 62).raise_for_status()
    assert len(jobs(database_url, TASK)) == 2  # the first is running, so the second was deferred
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    wait_for(
        lambda: [j["status"] for j in jobs(database_url, TASK)] == ["succeeded", "succeeded"],
        timeout=60,
        what="both jobs succeeded",
    )
    assert jobs(database_url, TASK)[0]["attempts"] == 2  # failed once, then succeeded


async def test_the_documented_route_answers_as_the_fast_path(kiosk):
    """The FastAPI route (the one in the OpenAPI schema) wraps the handler the fast path serves:
    the same refusal, the same body; and the schema still lists it."""
    from fastapi import FastAPI

    from kiosk.webhooks import routes

    bare = FastAPI()
    bare.include_router(routes.router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bare), base_url="http://kiosk"
    ) as client:
        direct = await client.post(
            routes.PATH, params={"data.id": "ORD01"}, json={"id": 1, "type": "order"}
        )
    async with httpx.AsyncClient(base_url=kiosk.url) as http:
        served = await http.post(
            routes.PATH, params={"data.id": "ORD01"}, json={"id": 1, "type": "order"}
        )
        schema = (await http.get("/openapi.json")).json()
    assert direct.status_code == served.status_code == 401
    assert direct.json() == served.json() and "x-signature" in served.json()["detail"].lower()
    assert "post" in schema["paths"][routes.PATH]
