"""Receipt email and notify hook: at most once per order, whatever the failures and retries."""

from kiosk import db, queue
from tests.payments_support import TERMINAL, jobs, rows
from tests.support import wait_for


def paid_order(kiosk, sim, email="ana@example.com"):
    kiosk.product("tea", price_cents=300, stock=5)
    order = kiosk.order({"tea": 1}, email=email)
    kiosk.pay(order["id"]).raise_for_status()
    sim.tap(TERMINAL, "approve")
    wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
    return order


def delivery(database_url, order_id, kind):
    found = rows(database_url, "SELECT * FROM order_deliveries WHERE order_id = %s AND kind = %s",
                 (order_id, kind))
    return found[0] if found else None


def settled(database_url, order_id, kind):
    row = delivery(database_url, order_id, kind)
    return row if row and row["state"] not in ("pending", "sending") else None


def test_refusals_are_retried_and_delivered_once(kiosk, sim, smtp, hook, start_worker, database_url):
    smtp.refuse_next = 1  # 451 to the first DATA: nothing delivered, try again
    hook.statuses = [503]  # the receiver did not take the first POST
    start_worker()
    order = paid_order(kiosk, sim)
    receipt = wait_for(lambda: settled(database_url, order["id"], "receipt"), timeout=60, what="receipt")
    notified = wait_for(lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="hook")
    assert receipt["state"] == "sent" and receipt["attempts"] == 2
    assert notified["state"] == "sent" and notified["attempts"] == 2
    assert len(smtp.messages) == 1
    assert len(hook.calls) == 2
    assert {c["headers"]["Idempotency-Key"] for c in hook.calls} == {f"order-paid-{order['id']}"}


def test_maybe_delivered_is_never_sent_again(kiosk, sim, hook, start_worker, database_url):
    hook.delay = 3  # answers after KIOSK_DELIVERY_TIMEOUT_SECONDS=1: the POST may have landed
    start_worker(KIOSK_DELIVERY_TIMEOUT_SECONDS="1")
    order = paid_order(kiosk, sim, email=None)
    notified = wait_for(lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="hook")
    assert notified["state"] == "unknown" and "ReadTimeout" in notified["last_error"]
    wait_for(lambda: [j["status"] for j in jobs(database_url, "orders.notify_paid")] == ["failed"],
             timeout=30, what="job failed, not retried")
    assert jobs(database_url, "orders.notify_paid")[0]["attempts"] == 1
    assert len(hook.calls) == 1
    assert delivery(database_url, order["id"], "receipt") is None  # no email address, no receipt


async def test_running_the_jobs_again_sends_nothing(kiosk, sim, smtp, hook, start_worker, pool, database_url):
    start_worker()
    order = paid_order(kiosk, sim)
    wait_for(lambda: all(settled(database_url, order["id"], kind) for kind in ("receipt", "notify_paid")),
             timeout=60, what="deliveries")
    unpaid = kiosk.order({"tea": 1})
    # An operator retries, or a bug defers again: the ledger says sent, or nothing is owed.
    async with db.transaction() as conn:
        await queue.defer(conn, "orders.send_receipt", order_id=order["id"])
        await queue.defer(conn, "orders.notify_paid", order_id=order["id"])
        await queue.defer(conn, "orders.send_receipt", order_id=unpaid["id"])
    wait_for(lambda: all(j["status"] == "succeeded" for t in ("orders.send_receipt", "orders.notify_paid")
                         for j in jobs(database_url, t)) and len(jobs(database_url, "orders.send_receipt")) == 3,
             timeout=60, what="jobs done")
    assert len(smtp.messages) == 1 and len(hook.calls) == 1
