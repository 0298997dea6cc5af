"""Money and goods agree (docs/payments.md#money-and-goods): ambiguous creates are resolved,
unknown Mercado Pago orders matched, unhonourable money refunded exactly once, and what needs an
operator is listed with its actions. Real uvicorn, workers and the Mercado Pago simulator.
"""

from __future__ import annotations

import concurrent.futures
import uuid

import httpx
import pytest

from kiosk.orders import expiry
from kiosk.orders import lifecycle as intents
from kiosk.settings import get_settings
from tests.support import free_port, wait_for
from tests.support.config import ACCESS_TOKEN, ADMIN_TOKEN
from tests.support.dashboard import csrf_of, sign_in
from tests.support.stack import QUIET, TERMINAL, backdate_orders, jobs, notify, rows

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

pytestmark = pytest.mark.usefixtures("same_settings")


@pytest.fixture
def kiosk(kiosk):
    """The kiosk API client, sending the admin token on the order endpoints (which take a device
    token or the admin token)."""
    kiosk.http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return kiosk


def intent_rows(database_url: str, order_id: str) -> list[dict]:
    return rows(
        database_url,
        "SELECT * FROM payment_intents WHERE order_id = %s ORDER BY created_at",
        (order_id,),
    )


def intent_row(database_url: str, intent_id) -> dict:
    (row,) = rows(database_url, "SELECT * FROM payment_intents WHERE id = %s", (intent_id,))
    return row


def creates(sim) -> list[dict]:
    return [
        r for r in sim.get("/_sim/requests") if r["method"] == "POST" and r["path"] == "/v1/orders"
    ]


def mp_create(sim, terminal: str, key: str, reference: str, amount: str = "2.50") -> dict:
    """An order at Mercado Pago made straight at the simulator (what an older kiosk, or another
    system, left there)."""
    response = httpx.post(
        f"{sim.url}/v1/orders",
        timeout=10,
        headers={"X-Idempotency-Key": key, "Authorization": f"Bearer {ACCESS_TOKEN}"},
        json={
            "type": "point",
            "external_reference": reference,
            "expiration_time": "PT5M",
            "transactions": {"payments": [{"amount": amount}]},
            "config": {"point": {"terminal_id": terminal}},
        },
    )
    response.raise_for_status()
    return response.json()


def legacy_error_intent(
    database_url: str, sim, order_id: str, terminal: str
) -> tuple[uuid.UUID, dict]:
    """An attempt an older kiosk left in `error` after a lost answer, whose charge does exist at
    Mercado Pago (the kiosk never learnt its id)."""
    intent_id = uuid.uuid4()
    key, reference = f"kiosk-charge-{intent_id}", f"kiosk-{intent_id.hex}"
    rows(
        database_url,
        "INSERT INTO payment_intents (id, order_id, terminal_id, idempotency_key, "
        "external_reference, amount_cents, status, outcome_unknown, last_error) "
        "VALUES (%s, %s, %s, %s, %s, 250, 'error', true, 'timed out') RETURNING id",
        (intent_id, order_id, terminal, key, reference),
    )
    return intent_id, mp_create(sim, terminal, key, reference)


# -- 1. ambiguous creates --------------------------------------------------------------------------


def test_dropped_connection_after_sending_is_unresolved_then_followed(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 1})
    sim.post("/_sim/chaos", {"drop": 1.0}).raise_for_status()
    response = kiosk.pay(order["id"])
    sim.post("/_sim/chaos", {}).raise_for_status()
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "unresolved"
    assert creates(sim)[0]["fault"] == "drop"
    (charge,) = sim.get("/_sim/orders")  # it was created: only the answer was lost
    sim.tap(TERMINAL, "take")
    start_worker(**QUIET)
    wait_for(
        lambda: intent_rows(database_url, order["id"])[0]["status"] == "at_terminal",
        timeout=60,
        what="intent follows Mercado Pago",
    )
    assert intent_rows(database_url, order["id"])[0]["provider_order_id"] == charge["id"]
    assert (
        len(sim.get("/_sim/orders")) == 1 and len({r["idempotency_key"] for r in creates(sim)}) == 1
    )
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")


def test_definitive_refusal_while_resolving_makes_the_intent_failed(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 1})
    sim.faults(fail_next=1, fail_status=503, method="POST")
    assert kiosk.pay(order["id"]).status_code == 202
    sim.faults(fail_next=1, fail_status=400, method="POST")  # the re-sent create is refused
    start_worker(**QUIET)
    wait_for(
        lambda: intent_rows(database_url, order["id"])[0]["status"] == "failed",
        timeout=60,
        what="intent failed",
    )
    (intent,) = intent_rows(database_url, order["id"])
    assert intent["provider_order_id"] is None and "HTTP 400" in intent["last_error"]
    assert [r["status"] for r in creates(sim)] == [503, 400]
    assert sim.get("/_sim/orders") == []
    # Nothing was charged: the order is payable again, on a new attempt.
    again = kiosk.pay(order["id"])
    assert again.status_code == 201 and again.json()["id"] != str(intent["id"])


async def test_nothing_sent_is_error_not_unresolved(kiosk, database_url, pool, monkeypatch):
    """Connection refused: the request never reached Mercado Pago, so nothing was created."""
    kiosk.product("tea", stock=3)
    order = kiosk.order({"tea": 1})
    monkeypatch.setenv("MP_API_BASE_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        with pytest.raises(Exception) as raised:
            await intents.create(uuid.UUID(order["id"]), TERMINAL)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert raised.value.status == 502 and "nothing was charged" in raised.value.detail
    (intent,) = intent_rows(database_url, order["id"])
    assert intent["status"] == "error" and not intent["outcome_unknown"]
    assert jobs(database_url, "payments.resolve_intent") == []


async def test_the_periodic_clean_up_finds_a_start_whose_process_died(
    kiosk, sim, start_worker, database_url, pool
):
    """Intent written, then the process died before (or while) calling Mercado Pago: once past
    the call's deadline the clean-up tick makes it unresolved with its job; the job re-sends the
    key and the charge is followed (here Mercado Pago never got it, so it is made now)."""
    from kiosk.orders import cleanup

    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 1})
    intent_id = uuid.uuid4()
    rows(
        database_url,
        "INSERT INTO payment_intents (id, order_id, terminal_id, idempotency_key, "
        "external_reference, amount_cents, updated_at) VALUES (%s, %s, %s, %s, %s, 250, "
        "now() - interval '30 seconds') RETURNING id",
        (intent_id, order["id"], TERMINAL, f"kiosk-charge-{intent_id}", f"kiosk-{intent_id.hex}"),
    )
    assert await cleanup.defer_checks() == 0  # still within the start's deadline: left alone
    rows(
        database_url,
        "UPDATE payment_intents SET updated_at = now() - interval '2 minutes' RETURNING id",
    )
    assert await cleanup.defer_checks() == 1
    assert intent_row(database_url, intent_id)["status"] == "unresolved"
    assert await cleanup.defer_checks() == 0  # its job is waiting: no second one
    start_worker(**QUIET)
    wait_for(
        lambda: intent_row(database_url, intent_id)["status"] == "created",
        timeout=60,
        what="resolved",
    )
    (charge,) = sim.get("/_sim/orders")
    assert intent_row(database_url, intent_id)["provider_order_id"] == charge["id"]
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")


# -- 2. notifications for orders the kiosk does not know by id -------------------------------------


def test_unknown_order_notification_is_matched_by_reference(kiosk, sim, start_worker, database_url):
    """The create's answer was lost and re-sending it keeps failing; the customer pays meanwhile.
    The notification's job reads the order, finds the intent by external_reference, links it and
    the order is paid."""
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 1})
    sim.faults(delay_next=1, delay_seconds=3, method="POST")
    assert kiosk.pay(order["id"]).status_code == 202
    wait_for(lambda: sim.get("/_sim/orders"), timeout=10, what="the slow order")
    sim.faults(fail_next=1000, fail_status=503, method="POST")  # resolution cannot get through
    start_worker(**QUIET)
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    (charge,) = sim.get("/_sim/orders")
    (intent,) = intent_rows(database_url, order["id"])
    assert intent["provider_order_id"] == charge["id"] and intent["status"] == "processed"
    wait_for(
        lambda: (
            {r["state"] for r in rows(database_url, "SELECT state FROM webhook_inbox")}
            == {"processed"}
        ),
        timeout=30,
        what="inbox processed",
    )
    sim.faults()


def test_foreign_order_notification_stays_ignored(kiosk, sim, start_worker, database_url):
    foreign = mp_create(sim, "SHARED", "someone-else-1", "not-ours-1")
    start_worker(**QUIET)
    assert notify(kiosk.url, foreign["id"], 700001).status_code == 200
    wait_for(
        lambda: rows(database_url, "SELECT state FROM webhook_inbox")[0]["state"] == "ignored",
        timeout=60,
        what="notification ignored",
    )
    (job,) = jobs(database_url, "payments.process_notification")
    wait_for(
        lambda: jobs(database_url, "payments.process_notification")[0]["status"] == "succeeded",
        timeout=30,
        what="job done",
    )
    assert job["lock"] == f"mp-order-{foreign['id']}"
    assert rows(database_url, "SELECT count(*) AS n FROM payment_intents")[0]["n"] == 0


# -- 3. cancel and expiry with unresolved or live charges ------------------------------------------


def test_cancel_waits_for_an_unresolved_charge_then_cancels_it(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 2})
    sim.faults(fail_next=1, fail_status=502, method="POST")
    assert kiosk.pay(order["id"]).status_code == 202
    response = kiosk.cancel(order["id"])
    assert response.status_code == 202, response.text
    assert response.json()["closing_status"] == "canceled"
    assert kiosk.stock("tea") == 1  # the charge may exist: the stock stays held
    start_worker(**QUIET)
    wait_for(lambda: kiosk.status_is(order["id"], "canceled"), timeout=60, what="order canceled")
    (charge,) = sim.get("/_sim/orders")
    assert charge["status"] == "canceled"
    assert intent_rows(database_url, order["id"])[0]["status"] == "canceled"
    assert kiosk.stock("tea") == 3


def test_a_live_unresolved_charge_paid_during_cancel_wins(kiosk, sim, start_worker, database_url):
    """The charge existed (its answer was late) and the customer pays it while the order is being
    cancelled: the stock was never released, so the order ends paid, nothing is refunded."""
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 1})
    sim.faults(delay_next=1, delay_seconds=3, method="POST")
    assert kiosk.pay(order["id"]).status_code == 202
    assert kiosk.cancel(order["id"]).status_code == 202
    wait_for(lambda: sim.get("/_sim/orders"), timeout=10, what="the slow order")
    sim.tap(TERMINAL, "approve")
    start_worker(**QUIET)
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    assert kiosk.stock("tea") == 2
    assert intent_rows(database_url, order["id"])[0]["refund_status"] is None


def test_cancel_during_a_start_that_mercado_pago_refuses_closes_the_order(kiosk, sim, database_url):
    """Cancel while the create is in flight waits for it (202); the create is refused (nothing was
    charged), so the order closes then and its stock comes back."""
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 2})
    sim.faults(fail_next=1, fail_status=400, delay_next=1, delay_seconds=1.5, method="POST")
    with concurrent.futures.ThreadPoolExecutor(1) as pool_:
        paying = pool_.submit(kiosk.pay, order["id"])
        wait_for(lambda: intent_rows(database_url, order["id"]), timeout=10, what="start written")
        canceled = kiosk.cancel(order["id"])
        assert canceled.status_code == 202, canceled.text
        assert paying.result().status_code == 502
    assert intent_rows(database_url, order["id"])[0]["status"] == "error"
    assert kiosk.get(order["id"])["status"] == "canceled" and kiosk.stock("tea") == 3


async def test_expiry_keeps_the_stock_of_an_order_with_an_unresolved_charge(
    kiosk, sim, start_worker, database_url, pool
):
    kiosk.product("tea", price_cents=250, stock=3)
    order = kiosk.order({"tea": 1})
    sim.faults(fail_next=1, fail_status=500, method="POST")
    assert kiosk.pay(order["id"]).status_code == 202
    backdate_orders(database_url, order["id"])
    outcome = await expiry.expire(uuid.UUID(order["id"]))
    assert outcome.status == "pending_payment" and kiosk.stock("tea") == 2
    start_worker(**QUIET)
    wait_for(lambda: kiosk.status_is(order["id"], "expired"), timeout=60, what="order expired")
    assert [o["status"] for o in sim.get("/_sim/orders")] == ["canceled"]
    assert kiosk.stock("tea") == 3


# -- 4. late money is refunded, exactly once -------------------------------------------------------


def refund_calls(sim, provider_order_id: str) -> list[dict]:
    return [
        r
        for r in sim.get("/_sim/requests")
        if r["path"] == f"/v1/orders/{provider_order_id}/refund"
    ]


def test_second_charge_of_a_paid_order_is_refunded_once(kiosk, sim, start_worker, database_url):
    """An older attempt's charge (never linked) is paid after the order was paid by another: it is
    matched by reference and refunded exactly once, under duplicate and concurrent notifications.
    The order stays paid."""
    kiosk.product("tea", price_cents=250, stock=5)
    order = kiosk.order({"tea": 1})
    old_id, old_charge = legacy_error_intent(database_url, sim, order["id"], "OLD_TERMINAL")
    start_worker(**QUIET)
    start_worker(**QUIET)
    assert kiosk.pay(order["id"]).status_code == 201
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")

    sim.webhooks(False)
    sim.tap("OLD_TERMINAL", "approve")
    # Mercado Pago's deliveries of the two changes, each several times, all at once.
    with concurrent.futures.ThreadPoolExecutor(8) as pool_:
        answers = list(
            pool_.map(
                lambda n: (
                    notify(
                        kiosk.url,
                        old_charge["id"],
                        810000 + n % 4,
                        "order.processed" if n % 2 else "order.at_terminal",
                    ).status_code
                ),
                range(24),
            )
        )
    assert set(answers) == {200}
    wait_for(
        lambda: intent_row(database_url, old_id)["status"] == "refunded",
        timeout=60,
        what="late charge refunded",
    )
    old = intent_row(database_url, old_id)
    assert (
        old["refund_status"] == "refunded"
        and old["refund_idempotency_key"] == f"kiosk-refund-{old_id}"
    )
    assert "already paid" in old["refund_reason"]
    (charge,) = [o for o in sim.get("/_sim/orders") if o["id"] == old_charge["id"]]
    assert charge["status"] == "refunded" and charge["refunds"] == 1
    assert {r["idempotency_key"] for r in refund_calls(sim, old_charge["id"])} == {
        f"kiosk-refund-{old_id}"
    }
    # More copies later change nothing.
    for n in range(3):
        assert notify(kiosk.url, old_charge["id"], 820000 + n).status_code == 200
    wait_for(
        lambda: (
            not rows(
                database_url, "SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
            )
        ),
        timeout=60,
        what="jobs done",
    )
    assert len(refund_calls(sim, old_charge["id"])) == 1
    paid = kiosk.get(order["id"])
    assert paid["status"] == "paid" and kiosk.stock("tea") == 4
    audit = rows(
        database_url,
        "SELECT actor, target, details FROM admin_audit WHERE action = 'payment.refund'",
    )
    assert len(audit) == 1 and audit[0]["target"] == f"payment_intent:{old_id}"
    assert audit[0]["details"]["provider_order_id"] == old_charge["id"]
    assert {j["status"] for j in jobs(database_url, "payments.refund_intent")} == {"succeeded"}
    metrics = httpx.get(f"{kiosk.url}/metrics", headers=ADMIN, timeout=10).text
    assert "\nkiosk_refunds_total 1.0\n" in metrics


def test_money_taken_for_a_canceled_order_is_refunded_and_the_order_stays_closed(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=250, stock=5)
    order = kiosk.order({"tea": 2})
    assert kiosk.cancel(order["id"]).status_code == 200  # nothing open in the kiosk: released
    assert kiosk.stock("tea") == 5
    old_id, old_charge = legacy_error_intent(database_url, sim, order["id"], "OLD_TERMINAL")
    start_worker(**QUIET)
    sim.tap("OLD_TERMINAL", "approve")
    wait_for(
        lambda: intent_row(database_url, old_id)["refund_status"] == "refunded",
        timeout=60,
        what="refunded",
    )
    assert kiosk.get(order["id"])["status"] == "canceled"
    assert kiosk.stock("tea") == 5  # stock = initial - sold
    assert "canceled" in intent_row(database_url, old_id)["refund_reason"]
    assert [o["refunds"] for o in sim.get("/_sim/orders")] == [1]


def test_ambiguous_refund_answers_are_retried_with_the_same_key(
    kiosk, sim, start_worker, database_url
):
    kiosk.product("tea", price_cents=250, stock=5)
    order = kiosk.order({"tea": 1})
    kiosk.cancel(order["id"]).raise_for_status()
    old_id, old_charge = legacy_error_intent(database_url, sim, order["id"], "OLD_TERMINAL")
    sim.webhooks(False)
    sim.tap("OLD_TERMINAL", "approve")
    # The first refund call is done at Mercado Pago but its answer is a 500.
    sim.post("/_sim/chaos", {"fail_after": 1.0, "method": "POST"}).raise_for_status()
    start_worker(**QUIET)
    assert notify(kiosk.url, old_charge["id"], 830001).status_code == 200
    wait_for(lambda: refund_calls(sim, old_charge["id"]), timeout=60, what="first refund call")
    sim.post("/_sim/chaos", {}).raise_for_status()
    wait_for(
        lambda: intent_row(database_url, old_id)["refund_status"] == "refunded",
        timeout=60,
        what="refunded",
    )
    calls = refund_calls(sim, old_charge["id"])
    assert calls[0]["status"] == 500 and calls[-1]["status"] == 200 and len(calls) >= 2
    assert {c["idempotency_key"] for c in calls} == {f"kiosk-refund-{old_id}"}
    assert [o["refunds"] for o in sim.get("/_sim/orders")] == [1]


# -- 5. attention: the list, the actions, the dashboard --------------------------------------------


def test_attention_list_and_actions(kiosk, sim, start_worker, database_url, api):
    kiosk.product("tea", price_cents=250, stock=5)
    # An unresolved charge whose resolution gave up (one attempt allowed).
    stuck = kiosk.order({"tea": 1})
    sim.faults(fail_next=1000, fail_status=503, method="POST")
    assert kiosk.pay(stuck["id"]).status_code == 202
    worker = start_worker(KIOSK_PAYMENT_MAX_ATTEMPTS="1", **QUIET)
    wait_for(
        lambda: [j["status"] for j in jobs(database_url, "payments.resolve_intent")] == ["failed"],
        timeout=60,
        what="resolution gave up",
    )
    # A refund Mercado Pago refuses: the refund call answers 400, the charge is still processed.
    sim.faults()
    closed = kiosk.order({"tea": 1})
    kiosk.cancel(closed["id"]).raise_for_status()
    old_id, old_charge = legacy_error_intent(database_url, sim, closed["id"], "OLD_TERMINAL")
    sim.faults(fail_next=1000, fail_status=400, method="POST")
    sim.tap("OLD_TERMINAL", "approve")
    wait_for(
        lambda: intent_row(database_url, old_id)["refund_status"] == "failed",
        timeout=60,
        what="refund failed",
    )
    worker.stop()
    sim.faults()
    (unresolved,) = intent_rows(database_url, stuck["id"])
    assert httpx.get(f"{kiosk.url}/admin/payments/attention", timeout=10).status_code == 401
    listed = kiosk.http.get("/admin/payments/attention", headers=ADMIN).json()
    assert [i["id"] for i in listed] == [str(old_id)]  # the unresolved one is not old enough yet
    rows(
        database_url,
        "UPDATE payment_intents SET updated_at = now() - interval '10 minutes' "
        "WHERE id = %s RETURNING id",
        (unresolved["id"],),
    )
    listed = kiosk.http.get("/admin/payments/attention", headers=ADMIN).json()
    assert {(i["id"], i["kind"]) for i in listed} == {
        (str(unresolved["id"]), "unresolved"),
        (str(old_id), "refund"),
    }
    refund_item = next(i for i in listed if i["kind"] == "refund")
    assert (
        refund_item["refund_status"] == "failed" and "HTTP 400" in refund_item["refund_last_error"]
    )
    metrics = httpx.get(f"{kiosk.url}/metrics", headers=ADMIN, timeout=10).text
    assert 'kiosk_payments_attention{kind="unresolved"} 1.0\n' in metrics
    assert 'kiosk_refunds_open{state="failed"} 1.0\n' in metrics

    # The dashboard page shows both, with CSRF-protected forms.
    browser = sign_in(api.url, "ana")
    short = browser.get("/admin/attention")
    assert short.status_code == 303 and short.headers["location"] == "/admin/ui/attention"
    page = browser.get("/admin/ui/attention")
    assert (
        page.status_code == 200 and str(unresolved["id"]) in page.text and str(old_id) in page.text
    )
    assert f'action="/admin/ui/attention/{unresolved["id"]}/resolve"' in page.text
    assert f'action="/admin/ui/attention/{old_id}/refund"' in page.text
    forged = browser.post(
        f"/admin/ui/attention/{unresolved['id']}/resolve", data={"csrf_token": "x"}
    )
    assert forged.status_code == 403

    # Resolve from the dashboard; retry the refund from the JSON API.
    csrf = csrf_of(browser, "/admin/ui/attention")
    done = browser.post(
        f"/admin/ui/attention/{unresolved['id']}/resolve",
        data={"csrf_token": csrf, "next": "/admin/ui/attention"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/ui/attention"
    retried = kiosk.http.post(
        f"/admin/payments/intents/{old_id}/refund", headers={**ADMIN, "X-Kiosk-Actor": "bea"}
    )
    assert retried.status_code == 200, retried.text
    again = kiosk.http.post(f"/admin/payments/intents/{old_id}/refund", headers=ADMIN)
    assert again.status_code == 409
    assert (
        kiosk.http.post(
            f"/admin/payments/intents/{uuid.uuid4()}/resolve", headers=ADMIN
        ).status_code
        == 404
    )
    start_worker(**QUIET)
    wait_for(
        lambda: intent_rows(database_url, stuck["id"])[0]["status"] == "created",
        timeout=60,
        what="resolved",
    )
    wait_for(
        lambda: intent_row(database_url, old_id)["refund_status"] == "refunded",
        timeout=60,
        what="refunded",
    )
    assert kiosk.http.get("/admin/payments/attention", headers=ADMIN).json() == []
    audit = rows(database_url, "SELECT actor, action, target FROM admin_audit ORDER BY id")
    assert {(a["actor"], a["action"]) for a in audit} >= {
        ("ana", "payment.resolve"),
        ("bea", "payment.refund_retry"),
        ("kiosk", "payment.refund"),
    }
    assert "Attention" in browser.get("/admin/").text


# -- the simulator's refund endpoint ---------------------------------------------------------------


def test_simulator_refund_endpoint(kiosk, sim):
    charge = mp_create(sim, "SIM_T", "sim-refund-1", "sim-refund-1")
    auth = {"Authorization": f"Bearer {ACCESS_TOKEN}"}

    def refund(order_id: str, key: str | None) -> httpx.Response:
        headers = {**auth, **({"X-Idempotency-Key": key} if key else {})}
        return httpx.post(f"{sim.url}/v1/orders/{order_id}/refund", headers=headers, timeout=10)

    assert refund(charge["id"], None).status_code == 400
    assert refund("ORDUNKNOWN", "k0").status_code == 404
    early = refund(charge["id"], "k1")
    assert early.status_code == 409  # only processed can be refunded
    sim.tap("SIM_T", "approve")
    assert refund(charge["id"], "k1").status_code == 409  # the same key answers as the first time
    first = refund(charge["id"], "k2")
    assert first.status_code == 200 and first.json()["status"] == "refunded"
    repeat = refund(charge["id"], "k2")
    assert repeat.status_code == 200 and repeat.json() == first.json()
    assert refund(charge["id"], "k3").status_code == 409
    (record,) = sim.get("/_sim/orders")
    assert record["refunds"] == 1 and record["took_money"] is True


@pytest.fixture(autouse=True)
def _calm_simulator(sim):
    """No fault or chaos leaks from one test into the next."""
    yield
    sim.faults()
    sim.post("/_sim/chaos", {}).raise_for_status()
    sim.webhooks(True)
