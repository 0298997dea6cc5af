"""Charging orders end to end: uvicorn, procrastinate workers, the Mercado Pago simulator, SMTP.

order -> payment intent -> card on the terminal -> signed webhook -> job reads Mercado Pago ->
order paid -> receipt email + notify hook, each once.
"""

import hashlib
import hmac
import json

import httpx

from tests.support import wait_for
from tests.support.stack import HOOK_SECRET, MAIL_FROM, TERMINAL, jobs, rows


def intent_rows(database_url, order_id):
    return rows(
        database_url,
        "SELECT * FROM payment_intents WHERE order_id = %s ORDER BY created_at",
        (order_id,),
    )


def test_full_flow_paid_receipt_and_hook_once(kiosk, sim, smtp, hook, start_worker, database_url):
    kiosk.product("coffee", price_cents=250, stock=10, name="Coffee")
    kiosk.product("croissant", price_cents=390, stock=5, name="Croissant")
    order = kiosk.order({"coffee": 2, "croissant": 1}, email="ana@example.com")
    assert order["status"] == "pending_payment" and order["total_cents"] == 890
    assert kiosk.stock("coffee") == 8 and kiosk.stock("croissant") == 4
    start_worker()

    response = kiosk.pay(order["id"])
    assert response.status_code == 201, response.text
    intent = response.json()
    assert intent["status"] == "created" and intent["order_id"] == order["id"]
    assert intent["terminal_id"] == TERMINAL and intent["provider_order_id"].startswith("ORD")

    provider = sim.order(intent["provider_order_id"])
    assert provider["transactions"]["payments"][0]["amount"] == "8.90"
    assert provider["external_reference"].startswith("kiosk-")
    assert provider["config"]["point"]["terminal_id"] == TERMINAL
    created = [r for r in sim.get("/_sim/requests") if r["method"] == "POST"]
    assert created[0]["idempotency_key"]

    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    wait_for(lambda: smtp.messages and hook.calls, timeout=60, what="receipt and hook")
    done = rows(database_url, "SELECT kind, state FROM order_deliveries ORDER BY kind")
    wait_for(
        lambda: (
            {r["state"] for r in rows(database_url, "SELECT state FROM order_deliveries")}
            == {"sent"}
        ),
        timeout=30,
        what="deliveries sent",
    )

    paid = kiosk.get(order["id"])
    assert paid["payment_intents"][0]["status"] == "processed" and paid["paid_at"]
    # Every notification the simulator sent was stored and processed.
    inbox = rows(database_url, "SELECT state, action FROM webhook_inbox ORDER BY id")
    assert [r["action"] for r in inbox] == ["order.at_terminal", "order.processed"]
    wait_for(
        lambda: all(
            r["state"] == "processed" for r in rows(database_url, "SELECT state FROM webhook_inbox")
        ),
        timeout=30,
        what="inbox processed",
    )

    (mail,) = smtp.messages
    assert mail["to"] == ["ana@example.com"] and mail["from"] == MAIL_FROM
    assert f"Message-ID: <receipt.{order['id']}@example.com>" in mail["content"]
    assert "8.90" in mail["content"] and "Croissant" in mail["content"]

    (call,) = hook.calls
    body = json.loads(call["body"])
    assert (
        body["event"] == "order.paid"
        and body["order_id"] == order["id"]
        and body["total_cents"] == 890
    )
    assert call["headers"]["Idempotency-Key"] == f"order-paid-{order['id']}"
    ts, v1 = (part.split("=", 1)[1] for part in call["headers"]["X-Kiosk-Signature"].split(","))
    expected = hmac.new(
        HOOK_SECRET.encode(), f"{ts}.".encode() + call["body"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(v1, expected)

    # Stock stays taken; a paid order cannot be charged again nor canceled.
    assert kiosk.stock("coffee") == 8
    assert kiosk.pay(order["id"]).status_code == 409
    assert kiosk.cancel(order["id"]).status_code == 409
    assert {j["status"] for j in jobs(database_url, "payments.process_notification")} == {
        "succeeded"
    }
    assert len(smtp.messages) == 1 and len(hook.calls) == 1
    assert done  # deliveries were planned in the paid transaction


def test_declined_card_then_second_intent_pays(kiosk, sim, smtp, start_worker, database_url):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1})
    start_worker()
    first = kiosk.pay(order["id"]).json()
    sim.tap(TERMINAL, "decline")
    wait_for(
        lambda: intent_rows(database_url, order["id"])[0]["status"] == "failed",
        timeout=60,
        what="intent failed",
    )
    assert kiosk.get(order["id"])["status"] == "pending_payment"

    second = kiosk.pay(order["id"])
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first["id"]
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    statuses = [i["status"] for i in kiosk.get(order["id"])["payment_intents"]]
    assert statuses == ["failed", "processed"]
    wait_for(lambda: len(smtp.messages) == 1, timeout=30, what="one receipt")


def test_provider_500_on_read_is_retried_then_paid(kiosk, sim, start_worker, database_url):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1}, email=None)
    kiosk.pay(order["id"]).raise_for_status()
    start_worker()
    sim.faults(fail_next=1, fail_status=500, method="GET")
    sim.tap(TERMINAL, "approve")
    wait_for(
        lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid after a retry"
    )
    gets = [r["status"] for r in sim.get("/_sim/requests") if r["method"] == "GET"]
    assert gets[0] == 500 and 200 in gets
    attempts = [j["attempts"] for j in jobs(database_url, "payments.process_notification")]
    assert max(attempts) >= 1


def test_provider_down_leaves_job_failed_and_order_unchanged(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1}, email=None)
    kiosk.pay(order["id"]).raise_for_status()
    sim.webhooks(False)
    processed = sim.tap(TERMINAL, "approve")
    sim.faults(fail_next=100, fail_status=503, method="GET")
    # One notification, so one job: it gives up after KIOSK_PAYMENT_MAX_ATTEMPTS=2 runs.
    start_worker(KIOSK_PAYMENT_MAX_ATTEMPTS="2")
    from tests.support.stack import notify

    assert notify(kiosk.url, processed["id"], 900001).status_code == 200
    wait_for(
        lambda: (
            [j["status"] for j in jobs(database_url, "payments.process_notification")] == ["failed"]
        ),
        timeout=60,
        what="job failed",
    )
    (job,) = jobs(database_url, "payments.process_notification")
    assert job["attempts"] == 2
    assert kiosk.get(order["id"])["status"] == "pending_payment"
    assert intent_rows(database_url, order["id"])[0]["status"] == "created"
    gets = [r["status"] for r in sim.get("/_sim/requests") if r["method"] == "GET"]
    assert gets == [503, 503]


def test_charge_500_is_unresolved_then_resolved_with_the_same_key(
    kiosk, sim, start_worker, database_url
):
    """A 5xx may hide a created charge: 202 with the intent `unresolved`, and a job re-sends the
    same idempotency key until Mercado Pago answers (here it creates the charge then)."""
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1})
    sim.faults(fail_next=1, fail_status=500, method="POST")
    response = kiosk.pay(order["id"])
    assert response.status_code == 202, response.text
    assert (
        response.json()["status"] == "unresolved" and response.json()["provider_order_id"] is None
    )
    (intent,) = intent_rows(database_url, order["id"])
    assert intent["status"] == "unresolved" and intent["outcome_unknown"]
    assert "HTTP 500" in intent["last_error"]
    # Deferred in the transaction that marked it unresolved.
    (job,) = jobs(database_url, "payments.resolve_intent")
    assert job["lock"] == f"order-{order['id']}"
    assert kiosk.get(order["id"])["payment_intents"][0]["status"] == "unresolved"
    # Still open: no second charge on this order meanwhile.
    assert kiosk.pay(order["id"]).status_code == 409

    start_worker()
    wait_for(
        lambda: intent_rows(database_url, order["id"])[0]["status"] == "created",
        timeout=60,
        what="intent resolved",
    )
    (sim_order,) = sim.get("/_sim/orders")
    assert intent_rows(database_url, order["id"])[0]["provider_order_id"] == sim_order["id"]
    keys = {r["idempotency_key"] for r in sim.get("/_sim/requests") if r["method"] == "POST"}
    assert keys == {intent["idempotency_key"]}
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")


def test_charge_timeout_is_unresolved_and_never_charges_twice(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1})
    # Mercado Pago is slow (3 s > KIOSK_MP_TIMEOUT_SECONDS=2) but does create the order.
    sim.faults(delay_next=1, delay_seconds=3, method="POST")
    response = kiosk.pay(order["id"])
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "unresolved"
    (intent,) = intent_rows(database_url, order["id"])
    assert "did not answer" in intent["last_error"]
    wait_for(lambda: len(sim.get("/_sim/orders")) == 1, timeout=10, what="the slow order")

    start_worker()
    wait_for(
        lambda: intent_rows(database_url, order["id"])[0]["provider_order_id"],
        timeout=60,
        what="intent resolved",
    )
    (sim_order,) = sim.get("/_sim/orders")
    (resolved,) = intent_rows(database_url, order["id"])
    assert resolved["provider_order_id"] == sim_order["id"] and resolved["status"] == "created"
    keys = {r["idempotency_key"] for r in sim.get("/_sim/requests") if r["method"] == "POST"}
    assert len(keys) == 1


def test_charge_conflicts(kiosk, sim):
    kiosk.product("tea", price_cents=300, stock=5)
    first = kiosk.order({"tea": 1})
    second = kiosk.order({"tea": 1})
    assert kiosk.pay(first["id"]).status_code == 201
    busy = kiosk.pay(second["id"])
    assert busy.status_code == 409 and "busy" in busy.json()["detail"]
    again = kiosk.pay(first["id"], terminal_id="OTHER_TERMINAL")
    assert again.status_code == 409 and "open payment intent" in again.json()["detail"]
    # Busy at Mercado Pago although not in the kiosk (another system's order on that terminal).
    httpx.post(
        f"{sim.url}/v1/orders",
        headers={"X-Idempotency-Key": "foreign", "Authorization": "Bearer test-access-token"},
        json={
            "type": "point",
            "external_reference": "foreign-1",
            "expiration_time": "PT5M",
            "transactions": {"payments": [{"amount": "1.00"}]},
            "config": {"point": {"terminal_id": "SHARED"}},
        },
    ).raise_for_status()
    shared = kiosk.pay(second["id"], terminal_id="SHARED")
    assert shared.status_code == 409 and "Mercado Pago" in shared.json()["detail"]
    assert kiosk.pay(second["id"], terminal_id="FREE").status_code == 201
    unknown = kiosk.http.post(
        "/orders/00000000-0000-0000-0000-000000000000/payment-intents", json={"terminal_id": "X"}
    )
    assert unknown.status_code == 404
    assert kiosk.pay(first["id"], terminal_id="bad id!").status_code == 422


def test_cancel_created_intent_cancels_at_mercado_pago(kiosk, sim, database_url):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 2})
    intent = kiosk.pay(order["id"]).json()
    response = kiosk.cancel(order["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    assert sim.order(intent["provider_order_id"])["status"] == "canceled"
    assert response.json()["payment_intents"][0]["status"] == "canceled"
    assert kiosk.stock("tea") == 3
    # Canceling again changes nothing, stock is released once.
    assert kiosk.cancel(order["id"]).status_code == 200
    assert kiosk.stock("tea") == 3
    assert kiosk.pay(order["id"]).status_code == 409


def test_cancel_at_terminal_waits_for_the_terminal(kiosk, sim, start_worker, database_url):
    kiosk.product("tea", price_cents=300, stock=4)
    start_worker()
    # Canceled on the terminal: the order ends canceled.
    order = kiosk.order({"tea": 1})
    intent = kiosk.pay(order["id"]).json()
    sim.tap(TERMINAL, "take")
    wait_for(
        lambda: kiosk.get(order["id"])["payment_intents"][0]["status"] == "at_terminal",
        timeout=60,
        what="intent at terminal",
    )
    response = kiosk.cancel(order["id"])
    assert response.status_code == 202, response.text
    assert (
        response.json()["status"] == "pending_payment"
        and response.json()["closing_status"] == "canceled"
    )
    assert kiosk.stock("tea") == 3
    assert kiosk.pay(order["id"], terminal_id="OTHER").status_code == 409
    sim.tap(TERMINAL, "cancel")
    wait_for(lambda: kiosk.status_is(order["id"], "canceled"), timeout=60, what="order canceled")
    assert kiosk.stock("tea") == 4
    assert sim.order(intent["provider_order_id"])["status"] == "canceled"

    # Paid on the terminal after the cancel request: money was taken, the order ends paid.
    order = kiosk.order({"tea": 1})
    kiosk.pay(order["id"]).raise_for_status()
    sim.tap(TERMINAL, "take")
    wait_for(
        lambda: kiosk.get(order["id"])["payment_intents"][0]["status"] == "at_terminal",
        timeout=60,
        what="intent at terminal",
    )
    assert kiosk.cancel(order["id"]).status_code == 202
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    assert kiosk.stock("tea") == 3
    assert kiosk.cancel(order["id"]).status_code == 409


def test_refund_after_paid(kiosk, sim, start_worker, database_url):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1}, email=None)
    intent = kiosk.pay(order["id"]).json()
    start_worker()
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    sim.post(
        f"/_sim/orders/{intent['provider_order_id']}/status", {"status": "refunded"}
    ).raise_for_status()
    wait_for(lambda: kiosk.status_is(order["id"], "refunded"), timeout=60, what="order refunded")
