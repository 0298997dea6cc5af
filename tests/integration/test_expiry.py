"""Periodic clean-ups: order expiry and stale payment intents, against real processes.

uvicorn, procrastinate workers and the Mercado Pago simulator run as real processes; the domain
calls the periodic jobs make (`kiosk.orders.expiry`, `kiosk.payments.cleanup`) also run in this
process, with the same settings as the children, where that proves the same thing. Workers get
crons that never fire during a test (QUIET) unless a test is about the periodic wiring itself.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from kiosk.orders import cleanup, expiry
from tests.support import wait_for
from tests.support.config import ADMIN_TOKEN
from tests.support.stack import QUIET, TERMINAL, backdate_orders, jobs, notify, rows

EVERY_2S = {
    "KIOSK_CLEANUP_PAYMENT_INTENTS_CRON": "* * * * * */2",
    "KIOSK_EXPIRE_ORDERS_CRON": "* * * * * */2",
}

pytestmark = pytest.mark.usefixtures("same_settings")


def backdate_intents(database_url: str) -> None:
    """Every open intent looks unchanged for an hour: past its time to live."""
    rows(
        database_url,
        "UPDATE payment_intents SET updated_at = now() - interval '1 hour' "
        "WHERE status IN ('created', 'at_terminal') RETURNING id",
    )


def intent_of(database_url: str, order_id: str) -> dict:
    (intent,) = rows(database_url, "SELECT * FROM payment_intents WHERE order_id = %s", (order_id,))
    return intent


def order_row(database_url: str, order_id: str) -> dict:
    (order,) = rows(database_url, "SELECT * FROM orders WHERE id = %s", (order_id,))
    return order


def mp_calls(sim) -> list[tuple[str, str, int]]:
    return [
        (r["method"], r["path"].rsplit("/", 1)[-1], r["status"]) for r in sim.get("/_sim/requests")
    ]


def job_statuses(database_url: str, task_name: str) -> list[str]:
    return [j["status"] for j in jobs(database_url, task_name)]


def lock_waiters(database_url: str) -> int:
    """Sessions of this database waiting for a lock (here: the order row)."""
    return rows(
        database_url,
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )[0]["n"]


def paid_once(database_url: str, smtp, hook) -> bool:
    deliveries = rows(database_url, "SELECT kind, state FROM order_deliveries")
    states = {r["kind"]: r["state"] for r in deliveries}
    return (
        states == {"receipt": "sent", "notify_paid": "sent"}
        and len(smtp.messages) == 1
        and len(hook.calls) == 1
    )


# -- order expiry ---------------------------------------------------------------------------------


async def test_expiry_releases_stock_and_cancels_a_created_charge(
    kiosk, sim, start_worker, database_url, pool
):
    kiosk.product("tea", stock=10)
    plain = kiosk.order({"tea": 2})
    charged = kiosk.order({"tea": 3})
    fresh = kiosk.order({"tea": 1})
    intent = kiosk.pay(charged["id"]).json()
    backdate_orders(database_url, plain["id"], charged["id"])

    assert await expiry.defer_expiries() == 2
    assert await expiry.defer_expiries() == 0  # both still waiting: one job per order
    start_worker(**QUIET)
    wait_for(
        lambda: job_statuses(database_url, "orders.expire") == ["succeeded"] * 2,
        timeout=60,
        what="two expiry jobs",
    )
    assert kiosk.get(plain["id"])["status"] == "expired"
    assert kiosk.get(charged["id"])["status"] == "expired"
    assert kiosk.get(fresh["id"])["status"] == "pending_payment"
    assert kiosk.stock("tea") == 9  # only the fresh order holds stock
    assert sim.order(intent["provider_order_id"])["status"] == "canceled"
    assert intent_of(database_url, charged["id"])["status"] == "canceled"
    (job,) = [
        j for j in jobs(database_url, "orders.expire") if j["args"]["order_id"] == charged["id"]
    ]
    assert job["lock"] == f"order-{charged['id']}"

    # Idempotent: again, nothing is due and expiring again releases nothing.
    assert await expiry.defer_expiries() == 0
    again = await expiry.expire(uuid.UUID(plain["id"]))
    assert again.status == "expired"
    assert kiosk.stock("tea") == 9
    assert kiosk.pay(plain["id"]).status_code == 409


async def test_expiry_waits_for_the_terminal(
    kiosk, sim, smtp, hook, start_worker, database_url, pool
):
    """A charge on the terminal cannot be cancelled: the terminal decides, a payment wins."""
    kiosk.product("tea", stock=10)
    start_worker(**QUIET)
    declined, paid = kiosk.order({"tea": 2}), kiosk.order({"tea": 3})
    for order, terminal in ((declined, "T_DECLINE"), (paid, "T_PAY")):
        kiosk.pay(order["id"], terminal_id=terminal).raise_for_status()
        sim.tap(terminal, "take")
        wait_for(
            lambda o=order: intent_of(database_url, o["id"])["status"] == "at_terminal",
            timeout=60,
            what="intent at terminal",
        )
    backdate_orders(database_url, declined["id"], paid["id"])

    for order in (declined, paid):
        outcome = await expiry.expire(uuid.UUID(order["id"]))
        assert outcome.status == "pending_payment" and "terminal" in outcome.note
        assert kiosk.get(order["id"])["closing_status"] == "expired"
    assert kiosk.stock("tea") == 5  # nothing released while the charges are open
    assert await expiry.defer_expiries() == 0  # closing: not listed again

    sim.tap("T_DECLINE", "decline")
    sim.tap("T_PAY", "approve")
    wait_for(
        lambda: kiosk.status_is(declined["id"], "expired"), timeout=60, what="declined: expired"
    )
    wait_for(lambda: kiosk.status_is(paid["id"], "paid"), timeout=60, what="paid: paid")
    assert kiosk.stock("tea") == 7  # the declined order's 2 units came back, the paid 3 did not
    wait_for(lambda: paid_once(database_url, smtp, hook), timeout=60, what="receipt and hook once")
    assert order_row(database_url, paid["id"])["stock_released_at"] is None


@pytest.mark.parametrize("first", ["payment", "expiry"])
async def test_payment_confirmed_during_expiry_wins(
    first, kiosk, sim, smtp, hook, start_worker, database_url, pool
):
    """The notification job (worker process) and the expiry (this process) reach the order row
    at the same moment: the test holds the row lock until both wait for it, in either order."""
    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 2})
    order_id = uuid.UUID(order["id"])
    start_worker(**QUIET)
    sim.webhooks(False)  # the kiosk learns of the payment only from the notification below
    intent = kiosk.pay(order["id"]).json()
    sim.tap(TERMINAL, "approve")
    backdate_orders(database_url, order["id"])

    async def wait_until(n: int) -> None:
        await asyncio.to_thread(
            wait_for,
            lambda: lock_waiters(database_url) == n,
            timeout=60,
            what=f"{n} sessions waiting for the order row",
        )

    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM orders WHERE id = %s FOR UPDATE", (order_id,))
        if first == "payment":
            assert notify(kiosk.url, intent["provider_order_id"], 1).status_code == 200
            await wait_until(1)
            expiring = asyncio.create_task(expiry.expire(order_id))
        else:
            expiring = asyncio.create_task(expiry.expire(order_id))
            await wait_until(1)
            assert notify(kiosk.url, intent["provider_order_id"], 1).status_code == 200
        await wait_until(2)
        holder.rollback()
        outcome = await asyncio.wait_for(expiring, 60)

    assert outcome.status == "paid"
    wait_for(
        lambda: job_statuses(database_url, "payments.process_notification") == ["succeeded"],
        timeout=60,
        what="notification job",
    )
    assert kiosk.get(order["id"])["status"] == "paid"
    assert (
        kiosk.stock("tea") == 3
        and order_row(database_url, order["id"])["stock_released_at"] is None
    )
    wait_for(lambda: paid_once(database_url, smtp, hook), timeout=60, what="receipt and hook once")
    # Expiry first asked Mercado Pago to cancel: refused (processed), read, recorded.
    cancels = [c for c in mp_calls(sim) if c[:2] == ("POST", "cancel")]
    assert cancels == ([("POST", "cancel", 409)] if first == "expiry" else [])


@pytest.mark.parametrize("first", ["orders.expire", "payments.process_notification"])
async def test_expiry_job_and_notification_job_never_overlap(
    first, kiosk, sim, smtp, hook, start_worker, database_url, pool
):
    """Both jobs carry the order's lock: whichever was deferred first runs first, alone."""
    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 2})
    sim.webhooks(False)
    intent = kiosk.pay(order["id"]).json()
    sim.tap(TERMINAL, "approve")
    backdate_orders(database_url, order["id"])
    defer_notification = lambda: notify(kiosk.url, intent["provider_order_id"], 1)  # noqa: E731
    if first == "orders.expire":
        assert await expiry.defer_expiries() == 1
        assert defer_notification().status_code == 200
    else:
        assert defer_notification().status_code == 200
        assert await expiry.defer_expiries() == 1

    start_worker(**QUIET)  # concurrency 3: both jobs are ready, only the lock keeps them apart
    wait_for(
        lambda: (
            job_statuses(database_url, "orders.expire") == ["succeeded"]
            and job_statuses(database_url, "payments.process_notification") == ["succeeded"]
        ),
        timeout=60,
        what="both jobs",
    )
    events = rows(
        database_url,
        "SELECT e.id, e.type, j.task_name FROM procrastinate_events e "
        "JOIN procrastinate_jobs j ON j.id = e.job_id "
        "WHERE e.type IN ('started', 'succeeded') AND j.task_name IN "
        "('orders.expire', 'payments.process_notification') ORDER BY e.id",
    )
    second = ({"orders.expire", "payments.process_notification"} - {first}).pop()
    assert [(e["task_name"], e["type"]) for e in events] == [
        (first, "started"),
        (first, "succeeded"),
        (second, "started"),
        (second, "succeeded"),
    ]
    assert kiosk.get(order["id"])["status"] == "paid"
    assert kiosk.stock("tea") == 3
    wait_for(lambda: paid_once(database_url, smtp, hook), timeout=60, what="receipt and hook once")


# -- stale payment intents ------------------------------------------------------------------------


async def test_stale_created_charge_is_cancelled_and_recorded(kiosk, sim, database_url, pool):
    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 2})
    intent = kiosk.pay(order["id"]).json()
    assert await cleanup.defer_checks() == 0  # not stale yet
    backdate_intents(database_url)
    assert await cleanup.defer_checks() == 1
    assert await cleanup.defer_checks() == 0  # its check is still waiting
    (job,) = jobs(database_url, "payments.check_stale_intent")
    assert job["lock"] == f"order-{order['id']}" and job["args"] == {"intent_id": intent["id"]}

    before = len(mp_calls(sim))
    checked = await cleanup.check(uuid.UUID(intent["id"]))
    assert checked.status == "canceled"
    # Read, cancel, read again (a cancel never wins over processed).
    assert mp_calls(sim)[before:] == [
        ("GET", intent["provider_order_id"], 200),
        ("POST", "cancel", 200),
        ("GET", intent["provider_order_id"], 200),
    ]
    assert sim.order(intent["provider_order_id"])["status"] == "canceled"
    assert intent_of(database_url, order["id"])["status"] == "canceled"
    # The order keeps waiting for a payment (its own TTL decides), and can be charged again.
    assert kiosk.get(order["id"])["status"] == "pending_payment" and kiosk.stock("tea") == 3
    calls = len(mp_calls(sim))
    again = await cleanup.check(uuid.UUID(intent["id"]))
    assert again.status == "canceled" and again.note == "already settled"
    assert len(mp_calls(sim)) == calls  # settled: Mercado Pago is not asked again
    assert kiosk.pay(order["id"]).status_code == 201


async def test_stale_processed_charge_pays_the_order_and_is_never_cancelled(
    kiosk, sim, smtp, hook, start_worker, database_url, pool
):
    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 2})
    sim.webhooks(False)  # the payment's notifications are lost
    intent = kiosk.pay(order["id"]).json()
    sim.tap(TERMINAL, "approve")
    backdate_intents(database_url)
    start_worker(**QUIET)  # runs the receipt and hook jobs the paid transaction defers

    checked = await cleanup.check(uuid.UUID(intent["id"]))
    assert checked.status == "processed"
    assert kiosk.get(order["id"])["status"] == "paid"
    assert not [c for c in mp_calls(sim) if c[1] == "cancel"]
    wait_for(lambda: paid_once(database_url, smtp, hook), timeout=60, what="receipt and hook once")
    assert kiosk.stock("tea") == 3


async def test_stale_charge_on_the_terminal_is_left_and_read_again(kiosk, sim, database_url, pool):
    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 2})
    sim.webhooks(False)
    intent = kiosk.pay(order["id"]).json()
    sim.tap(TERMINAL, "take")
    backdate_intents(database_url)

    checked = await cleanup.check(uuid.UUID(intent["id"]))
    assert checked.status == "at_terminal"
    assert not [c for c in mp_calls(sim) if c[1] == "cancel"]
    assert sim.order(intent["provider_order_id"])["status"] == "at_terminal"
    assert kiosk.get(order["id"])["status"] == "pending_payment"

    # Recording at_terminal counts as a change; once stale again, the next tick reads it again.
    assert await cleanup.defer_checks() == 0
    backdate_intents(database_url)
    assert await cleanup.defer_checks() == 1
    sim.tap(TERMINAL, "decline")
    assert (await cleanup.check(uuid.UUID(intent["id"]))).status == "failed"
    assert kiosk.get(order["id"])["status"] == "pending_payment" and kiosk.stock("tea") == 3


async def test_provider_error_on_one_intent_does_not_block_the_others(
    kiosk, sim, start_worker, database_url, pool
):
    kiosk.product("tea", stock=10)
    orders = [kiosk.order({"tea": 1}) for _ in range(3)]
    for n, order in enumerate(orders):
        kiosk.pay(order["id"], terminal_id=f"T{n}").raise_for_status()
    backdate_intents(database_url)
    sim.faults(fail_next=1, fail_status=500, method="GET")

    assert await cleanup.defer_checks() == 3
    start_worker(**QUIET)
    wait_for(
        lambda: (
            sorted(job_statuses(database_url, "payments.check_stale_intent"))
            == ["failed", "succeeded", "succeeded"]
        ),
        timeout=60,
        what="three checks",
    )
    statuses = sorted(intent_of(database_url, o["id"])["status"] for o in orders)
    assert statuses == ["canceled", "canceled", "created"]

    # The next tick checks the one that failed.
    assert await cleanup.defer_checks() == 1
    wait_for(
        lambda: all(intent_of(database_url, o["id"])["status"] == "canceled" for o in orders),
        timeout=60,
        what="all cancelled",
    )
    assert all(o["status"] == "canceled" for o in sim.get("/_sim/orders"))


async def test_a_start_that_never_recorded_its_answer_is_resolved(kiosk, sim, database_url, pool):
    """The API died between writing the intent and calling Mercado Pago: the charge may exist, so
    the order keeps its stock. Once past the start's deadline the check makes the intent
    `unresolved` and defers its resolution; that re-sends the same key (here Mercado Pago never
    got it, so the charge is made now), sees the order is being expired, cancels the charge and
    the order expires with its stock back."""
    from kiosk.orders import lifecycle as intents

    kiosk.product("tea", stock=5)
    order = kiosk.order({"tea": 2})
    intent_id = uuid.uuid4()
    key = f"kiosk-charge-{intent_id}"
    rows(
        database_url,
        "INSERT INTO payment_intents (id, order_id, terminal_id, idempotency_key, "
        "external_reference, amount_cents) VALUES (%s, %s, %s, %s, %s, 500) RETURNING id",
        (intent_id, order["id"], TERMINAL, key, f"kiosk-{intent_id.hex}"),
    )
    backdate_orders(database_url, order["id"])
    expired = await expiry.expire(uuid.UUID(order["id"]))
    assert expired.status == "pending_payment"  # a charge may exist: nothing released
    assert order_row(database_url, order["id"])["closing_status"] == "expired"
    assert kiosk.stock("tea") == 3

    assert (await cleanup.check(intent_id)).note == "not stale (yet): left for the next tick"
    backdate_intents(database_url)
    checked = await cleanup.check(intent_id)
    assert checked.status == "unresolved" and checked.note == "unresolved: resolution deferred"
    (job,) = jobs(database_url, "payments.resolve_intent")
    assert job["args"] == {"intent_id": str(intent_id)} and job["lock"] == f"order-{order['id']}"

    resolved = await intents.resolve(intent_id)
    assert resolved.status == "canceled", resolved
    (charge,) = sim.get("/_sim/orders")
    assert (
        charge["status"] == "canceled" and charge["external_reference"] == f"kiosk-{intent_id.hex}"
    )
    assert [
        r["idempotency_key"] for r in sim.get("/_sim/requests") if r["path"] == "/v1/orders"
    ] == [key]
    assert kiosk.get(order["id"])["status"] == "expired"
    assert kiosk.stock("tea") == 5


# -- the periodic wiring --------------------------------------------------------------------------


def test_periodic_tasks_run_on_their_cron_once_per_tick(kiosk, sim, start_worker, database_url):
    """Two workers with both crons every 2 seconds: the work gets done, one job per tick."""
    kiosk.product("tea", stock=10)
    due = kiosk.order({"tea": 2})
    charged = kiosk.order({"tea": 3})
    intent = kiosk.pay(charged["id"]).json()
    backdate_orders(database_url, due["id"])
    backdate_intents(database_url)
    # The admin API lists them with the API's (default) crons, and runs one now.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    listed = {p["name"]: p["cron"] for p in kiosk.http.get("/admin/periodic", headers=admin).json()}
    assert listed["payments.cleanup_payment_intents"] == "*/2 * * * *"
    assert listed["orders.expire_orders"] == "*/10 * * * *"
    run = kiosk.http.post("/admin/periodic/orders.expire_orders/run", headers=admin)
    assert run.status_code == 200, run.text
    assert (
        kiosk.http.post("/admin/periodic/orders.expire_orders/run", headers=admin).status_code
        == 409
    )

    start_worker(**EVERY_2S)
    start_worker(**EVERY_2S)
    wait_for(lambda: kiosk.status_is(due["id"], "expired"), timeout=60, what="order expired")
    wait_for(
        lambda: sim.order(intent["provider_order_id"])["status"] == "canceled",
        timeout=60,
        what="stale charge cancelled",
    )
    wait_for(
        lambda: intent_of(database_url, charged["id"])["status"] == "canceled",
        timeout=60,
        what="cancel recorded",
    )
    assert kiosk.stock("tea") == 7  # the due order's 2 units are back; the charged order holds 3
    assert kiosk.get(charged["id"])["status"] == "pending_payment"
    for task in ("payments.cleanup_payment_intents", "orders.expire_orders"):
        ticks = [
            j["args"]["timestamp"]
            for j in jobs(database_url, task)
            if j["id"] != run.json()["job_id"]
        ]
        assert ticks and len(ticks) == len(set(ticks)), (task, ticks)
        assert all(t % 2 == 0 for t in ticks)


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"KIOSK_EXPIRE_ORDERS_CRON": "every 10 minutes"},
            "KIOSK_EXPIRE_ORDERS_CRON must be a cron",
        ),
        (
            {"KIOSK_CLEANUP_PAYMENT_INTENTS_CRON": "61 * * * *"},
            "KIOSK_CLEANUP_PAYMENT_INTENTS_CRON must be a cron",
        ),
        (
            {"KIOSK_CLEANUP_PAYMENT_INTENTS_CRON": "* * * * * * *"},
            "KIOSK_CLEANUP_PAYMENT_INTENTS_CRON must be a cron",
        ),
    ],
)
def test_bad_cron_is_one_line_naming_the_variable(change, expected):
    from tests.support.startup import VALID, start_api

    result = start_api({**VALID, **change})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
