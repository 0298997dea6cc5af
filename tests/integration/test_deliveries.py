"""Receipt email and notify hook: at least once per order, every copy carrying its delivery's key;
given up only past the limits, then listed, resendable (audited) and counted in /metrics.

Real parts: uvicorn, the Mercado Pago simulator, procrastinate workers, aiosmtpd and an HTTP
receiver; a worker is killed with SIGKILL mid-send and its job put back by the production sweep.
"""

import asyncio
import contextlib
import email
import hashlib
import hmac
import re
import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kiosk import db, queue
from kiosk.jobs import maintenance
from kiosk.notifications import deliveries
from tests.support import PROJECT_DIR, wait_for
from tests.support.config import ADMIN_TOKEN
from tests.support.dashboard import csrf_of, sign_in
from tests.support.stack import HOOK_SECRET, TERMINAL, jobs, rows

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NO_TOKEN = {"Authorization": ""}  # kiosk.http sends the admin token unless told otherwise
FAST_RETRIES = {"KIOSK_DELIVERY_RETRY_BACKOFF_SECONDS": "1"}


def new_order(kiosk, email="ana@example.com"):
    """POST /orders with the admin token (the order endpoints take a device's or the admin's)."""
    response = kiosk.http.post(
        "/orders",
        headers=ADMIN,
        json={"items": [{"sku": "tea", "quantity": 1}], "customer_email": email},
    )
    assert response.status_code == 201, response.text
    return response.json()


def paid_order(kiosk, sim, email="ana@example.com"):
    kiosk.product("tea", price_cents=300, stock=5)
    order = new_order(kiosk, email)
    kiosk.http.post(
        f"/orders/{order['id']}/payment-intents", headers=ADMIN, json={"terminal_id": TERMINAL}
    ).raise_for_status()
    sim.tap(TERMINAL, "approve")
    wait_for(
        lambda: kiosk.http.get(f"/orders/{order['id']}", headers=ADMIN).json()["status"] == "paid",
        timeout=60,
        what="order paid",
    )
    return order


def delivery(database_url, order_id, kind):
    found = rows(
        database_url,
        "SELECT * FROM order_deliveries WHERE order_id = %s AND kind = %s",
        (order_id, kind),
    )
    return found[0] if found else None


def settled(database_url, order_id, kind):
    row = delivery(database_url, order_id, kind)
    return row if row and row["state"] in ("sent", "failed") else None


def in_state(database_url, order_id, kind, *states):
    row = delivery(database_url, order_id, kind)
    return row if row and row["state"] in states else None


def signed(call: dict) -> int:
    """The signature's timestamp, once the receiver's documented check passed."""
    parts = dict(p.split("=", 1) for p in call["headers"]["X-Kiosk-Signature"].split(","))
    expected = hmac.new(
        HOOK_SECRET.encode(), f"{parts['t']}.".encode() + call["body"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    return int(parts["t"])


def one_key_one_body(calls: list[dict], order_id: str) -> None:
    assert {c["headers"]["Idempotency-Key"] for c in calls} == {f"order-paid-{order_id}"}
    assert len({c["body"] for c in calls}) == 1
    for call in calls:
        signed(call)


def receiver_from_the_docs():
    """docs/payments.md's receiver snippet, run as written: its `receive` and what it handled."""
    text = (PROJECT_DIR / "docs" / "payments.md").read_text()
    section = text[text.index("### What a receiver must do") :]
    namespace: dict = {}
    exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), namespace)  # noqa: S102
    handled: list[dict] = []
    namespace.update(SECRET=HOOK_SECRET.encode(), handle_order_paid=handled.append)
    return namespace["receive"], handled


def test_refusals_are_retried_and_delivered_once(
    kiosk, sim, smtp, hook, start_worker, database_url
):
    smtp.refuse_next = 1  # 451 to the first DATA: nothing delivered, try again
    hook.statuses = [503]  # the receiver did not take the first POST
    start_worker(**FAST_RETRIES)
    order = paid_order(kiosk, sim)
    receipt = wait_for(
        lambda: settled(database_url, order["id"], "receipt"), timeout=60, what="receipt"
    )
    notified = wait_for(
        lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="hook"
    )
    assert receipt["state"] == "sent" and receipt["attempts"] == 2
    assert notified["state"] == "sent" and notified["attempts"] == 2
    # Refused attempts delivered nothing: no copy anywhere, nothing counted as a resend.
    assert receipt["resends"] == notified["resends"] == 0
    assert not receipt["maybe_delivered"] and not notified["maybe_delivered"]
    assert len(smtp.messages) == 1
    assert len(hook.calls) == 2
    one_key_one_body(hook.calls, order["id"])


def test_a_hook_whose_answer_never_came_is_sent_again_with_the_same_key(
    kiosk, sim, hook, start_worker, database_url
):
    hook.delays = [
        3
    ]  # the first answer comes after KIOSK_DELIVERY_TIMEOUT_SECONDS=1: maybe delivered
    start_worker(KIOSK_DELIVERY_TIMEOUT_SECONDS="1", **FAST_RETRIES)
    order = paid_order(kiosk, sim, email=None)
    notified = wait_for(
        lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="hook"
    )
    assert notified["state"] == "sent", notified
    assert notified["attempts"] == 2 and notified["resends"] == 1 and notified["maybe_delivered"]
    assert "ReadTimeout" in notified["last_error"]  # why there was a second attempt
    # The receiver got it twice: same key, same body, each attempt signed afresh.
    assert len(hook.calls) == 2
    one_key_one_body(hook.calls, order["id"])
    assert signed(hook.calls[1]) >= signed(hook.calls[0])
    # The receiver of docs/payments.md handles the first and answers 200 to the copy.
    receive, handled = receiver_from_the_docs()
    assert [receive(c["headers"], c["body"]) for c in hook.calls] == [200, 200]
    assert [h["order_id"] for h in handled] == [order["id"]] and handled[0]["event"] == "order.paid"
    assert receive(hook.calls[0]["headers"], hook.calls[0]["body"].replace(b"paid", b"PAID")) == 401
    job = jobs(database_url, "orders.notify_paid")
    assert [j["status"] for j in job] == ["succeeded"] and job[0]["attempts"] == 2
    assert job[0]["lock"] == f"delivery-notify_paid-{order['id']}"
    assert delivery(database_url, order["id"], "receipt") is None  # no email address, no receipt


def test_a_receipt_whose_answer_never_came_is_resent_with_the_same_message_id(
    kiosk, sim, smtp, start_worker, database_url
):
    smtp.delay_next, smtp.delay_seconds = 1, 3  # DATA taken, the 250 comes after the 1 s timeout
    start_worker(KIOSK_DELIVERY_TIMEOUT_SECONDS="1", **FAST_RETRIES)
    order = paid_order(kiosk, sim)
    receipt = wait_for(
        lambda: settled(database_url, order["id"], "receipt"), timeout=60, what="receipt"
    )
    assert receipt["state"] == "sent" and receipt["attempts"] == 2
    assert receipt["resends"] == 1 and receipt["maybe_delivered"]
    ids = [email.message_from_string(m["content"])["Message-ID"] for m in smtp.messages]
    assert len(ids) == 2 and len(set(ids)) == 1 and ids[0].startswith(f"<receipt.{order['id']}@")


async def test_a_worker_killed_while_sending_is_swept_and_the_hook_sent_again(
    kiosk, sim, hook, start_worker, pool, database_url
):
    hook.delays = [15]  # the first POST hangs: its worker is killed while waiting for the answer
    first = start_worker(KIOSK_DELIVERY_TIMEOUT_SECONDS="30")
    order = paid_order(kiosk, sim, email=None)
    wait_for(lambda: hook.calls, timeout=60, what="the hook in flight")
    assert delivery(database_url, order["id"], "notify_paid")["state"] == "sending"
    first.signal(signal.SIGKILL)
    first.popen.wait(10)
    # The production sweep (the periodic jobs.retry_stalled_jobs) puts the dead worker's job back.
    (job,) = jobs(database_url, "orders.notify_paid")
    swept: list[int] = []
    for _ in range(300):  # until its heartbeat is 2 s old: a poll with a deadline
        swept = await maintenance.retry_stalled_jobs(queue.app.job_manager, stalled_after=2)
        if swept:
            break
        await asyncio.sleep(0.1)
    assert swept == [job["id"]]
    start_worker()
    notified = wait_for(
        lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="hook"
    )
    assert notified["state"] == "sent" and notified["attempts"] == 2
    assert notified["resends"] == 1 and notified["maybe_delivered"]
    assert "stopped while sending" in notified["last_error"]
    assert len(hook.calls) == 2
    one_key_one_body(hook.calls, order["id"])


def metric(api_url: str, name: str) -> dict[str, float]:
    text = httpx.get(f"{api_url}/metrics", headers=ADMIN, timeout=30).text
    return {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_past_its_max_age_a_hook_is_listed_resent_by_an_operator_and_audited(
    kiosk, sim, hook, start_worker, database_url, api
):
    hook.statuses = [503] * 1000  # the receiver is down
    start_worker(KIOSK_DELIVERY_RETRY_BACKOFF_SECONDS="2")
    order = paid_order(kiosk, sim, email=None)
    wait_for(
        lambda: in_state(database_url, order["id"], "notify_paid", "pending"),
        timeout=60,
        what="a 503",
    )
    assert metric(api.url, "kiosk_deliveries") == {
        "pending": 1,
        "sending": 0,
        "unknown": 0,
        "failed": 0,
    }
    # Two days later (the window moved back): the next attempt gives up instead of sending. Moved
    # while the delivery waits, not while an attempt is out (that attempt's end would give up with
    # its own message): the update takes the row only in `pending`, polled until it does.
    wait_for(
        lambda: rows(
            database_url,
            "UPDATE order_deliveries SET window_started_at = now() - interval "
            "'2 days' WHERE order_id = %s AND kind = 'notify_paid' AND state = 'pending' "
            "RETURNING order_id",
            (order["id"],),
        ),
        timeout=60,
        what="the delivery waiting",
    )
    failed = wait_for(
        lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="given up"
    )
    assert failed["state"] == "failed"
    assert (
        "KIOSK_DELIVERY_MAX_AGE_SECONDS" in failed["last_error"]
        and "HTTP 503" in failed["last_error"]
    )
    wait_for(
        lambda: [j["status"] for j in jobs(database_url, "orders.notify_paid")] == ["failed"],
        timeout=30,
        what="the job failed with it",
    )
    assert metric(api.url, "kiosk_deliveries")["failed"] == 1

    # The operators' list: every delivery not sent by default, or one state.
    listed = kiosk.http.get("/admin/deliveries", headers=ADMIN).json()
    assert [(d["order_id"], d["kind"], d["state"]) for d in listed["deliveries"]] == [
        (order["id"], "notify_paid", "failed")
    ]
    assert listed["next_cursor"] is None
    assert (
        len(kiosk.http.get("/admin/deliveries?state=failed", headers=ADMIN).json()["deliveries"])
        == 1
    )
    assert kiosk.http.get("/admin/deliveries?state=sent", headers=ADMIN).json()["deliveries"] == []
    assert kiosk.http.get("/admin/deliveries?state=lost", headers=ADMIN).status_code == 422
    assert kiosk.http.get("/admin/deliveries", headers=NO_TOKEN).status_code == 401

    # Resend: refused without the token, for an unknown delivery or kind; then done and audited.
    path = f"/admin/deliveries/{order['id']}/notify_paid/resend"
    assert kiosk.http.post(path, headers=NO_TOKEN).status_code == 401
    other = "00000000-0000-4000-8000-000000000000"
    missing = kiosk.http.post(f"/admin/deliveries/{other}/notify_paid/resend", headers=ADMIN)
    assert missing.status_code == 404 and "has no notify_paid delivery" in missing.json()["detail"]
    assert (
        kiosk.http.post(f"/admin/deliveries/{order['id']}/fax/resend", headers=ADMIN).status_code
        == 422
    )

    def resends() -> list[dict]:
        entries = kiosk.http.get("/admin/audit", headers=ADMIN).json()["entries"]
        return [e for e in entries if e["action"] == "delivery.resend"]

    assert resends() == []
    hook.statuses.clear()  # the receiver is back
    resent = kiosk.http.post(path, headers={**ADMIN, "X-Kiosk-Actor": "ana"})
    assert resent.status_code == 202, resent.text
    assert resent.json()["state"] == "pending" and resent.json()["job_id"]
    sent = wait_for(
        lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="resent"
    )
    assert sent["state"] == "sent" and sent["attempts"] == 1  # a new window
    (entry,) = resends()
    assert (entry["actor"], entry["action"], entry["target"]) == (
        "ana",
        "delivery.resend",
        f"delivery:{order['id']}/notify_paid",
    )
    assert (
        entry["details"]["job_id"] == resent.json()["job_id"]
        and entry["details"]["previous_attempts"] >= 1
    )
    again = kiosk.http.post(path, headers=ADMIN)
    assert (
        again.status_code == 409
        and "only a failed delivery can be resent" in again.json()["detail"]
    )
    assert len(resends()) == 1
    one_key_one_body(hook.calls, order["id"])
    assert hook.calls[-1]["headers"]["Idempotency-Key"] == f"order-paid-{order['id']}"
    assert metric(api.url, "kiosk_deliveries") == {
        "pending": 0,
        "sending": 0,
        "unknown": 0,
        "failed": 0,
    }
    assert (
        kiosk.http.get("/admin/deliveries?state=sent", headers=ADMIN).json()["deliveries"][0][
            "attempts"
        ]
        == 1
    )


def test_after_its_max_attempts_a_receipt_is_given_up_and_resent_from_the_dashboard(
    kiosk, sim, smtp, start_worker, database_url, api
):
    smtp.refuse_next = 1000  # 451 to every DATA
    start_worker(KIOSK_DELIVERY_MAX_ATTEMPTS="2", **FAST_RETRIES)
    order = paid_order(kiosk, sim)
    failed = wait_for(
        lambda: settled(database_url, order["id"], "receipt"), timeout=60, what="given up"
    )
    assert failed["state"] == "failed" and failed["attempts"] == 2
    assert failed["last_error"].startswith("gave up after 2 attempts")
    assert smtp.messages == []

    with contextlib.closing(sign_in(api.url, operator="bea")) as browser:
        page = browser.get("/admin/ui/deliveries")
        assert page.status_code == 200 and order["id"] in page.text and "Resend" in page.text
        assert 'href="/admin/ui/deliveries" aria-current="page"' in page.text
        resend = f"/admin/ui/deliveries/{order['id']}/receipt/resend"
        forged = browser.post(resend, data={"csrf_token": "forged", "next": "/admin/ui/deliveries"})
        assert forged.status_code == 403
        assert delivery(database_url, order["id"], "receipt")["state"] == "failed"
        smtp.refuse_next = 0
        done = browser.post(
            resend,
            data={
                "csrf_token": csrf_of(browser, "/admin/ui/deliveries"),
                "next": "/admin/ui/deliveries",
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/admin/ui/deliveries"
        sent = wait_for(
            lambda: settled(database_url, order["id"], "receipt"), timeout=60, what="resent"
        )
        assert sent["state"] == "sent" and len(smtp.messages) == 1
        assert "Every receipt and hook was delivered." in browser.get("/admin/ui/deliveries").text
        assert order["id"] in browser.get("/admin/ui/deliveries?state=sent").text
        (entry,) = rows(
            database_url,
            "SELECT actor, action, target FROM admin_audit WHERE action = 'delivery.resend'",
        )
        assert entry == {
            "actor": "bea",
            "action": "delivery.resend",
            "target": f"delivery:{order['id']}/receipt",
        }


async def test_a_delivery_left_without_a_job_is_resumed_by_the_periodic_sweep(
    kiosk, sim, hook, start_worker, pool, database_url
):
    hook.statuses = [503]
    start_worker(KIOSK_DELIVERY_RETRY_BACKOFF_SECONDS="600")  # its job would wait ten minutes
    order = paid_order(kiosk, sim, email=None)

    def retry_waiting() -> bool:
        # `pending` is also the state before the first attempt: wait for the 503 to be recorded
        # and the job's retry to wait, or the cancel below may find the attempt still running.
        row = in_state(database_url, order["id"], "notify_paid", "pending")
        waiting = [j["status"] for j in jobs(database_url, "orders.notify_paid")] == ["todo"]
        return bool(row and row["attempts"] >= 1 and waiting)

    wait_for(retry_waiting, timeout=60, what="a 503 and its retry waiting")
    (job,) = jobs(database_url, "orders.notify_paid")
    assert await deliveries.resume_due() == {"resumed": 0, "given_up": 0}  # its job is waiting
    # An operator cancels the waiting job; later the delivery is due and has no job.
    assert kiosk.http.post(f"/admin/jobs/{job['id']}/cancel", headers=ADMIN).status_code == 200
    rows(
        database_url,
        "UPDATE order_deliveries SET next_attempt_at = now() - interval '5 minutes' "
        "RETURNING order_id",
    )
    assert await deliveries.resume_due() == {"resumed": 1, "given_up": 0}
    sent = wait_for(
        lambda: settled(database_url, order["id"], "notify_paid"), timeout=60, what="resumed"
    )
    assert sent["state"] == "sent" and sent["attempts"] == 2
    assert await deliveries.resume_due() == {"resumed": 0, "given_up": 0}
    one_key_one_body(hook.calls, order["id"])


async def test_running_the_jobs_again_sends_nothing(
    kiosk, sim, smtp, hook, start_worker, pool, database_url
):
    start_worker()
    order = paid_order(kiosk, sim)
    wait_for(
        lambda: all(
            settled(database_url, order["id"], kind) for kind in ("receipt", "notify_paid")
        ),
        timeout=60,
        what="deliveries",
    )
    unpaid = new_order(kiosk, email=None)
    # An operator retries, or a bug defers again: the ledger says sent, or nothing is owed.
    async with db.transaction() as conn:
        await queue.defer(conn, "orders.send_receipt", order_id=order["id"])
        await queue.defer(conn, "orders.notify_paid", order_id=order["id"])
        await queue.defer(conn, "orders.send_receipt", order_id=unpaid["id"])
    wait_for(
        lambda: (
            all(
                j["status"] == "succeeded"
                for t in ("orders.send_receipt", "orders.notify_paid")
                for j in jobs(database_url, t)
            )
            and len(jobs(database_url, "orders.send_receipt")) == 3
        ),
        timeout=60,
        what="jobs done",
    )
    assert len(smtp.messages) == 1 and len(hook.calls) == 1
