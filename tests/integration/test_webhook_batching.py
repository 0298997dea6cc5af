"""Group commit of webhook notifications (kiosk/webhooks/batcher.py) against a real PostgreSQL.

Concurrent notifications share one transaction, yet each acknowledgement comes after its own row
and job are committed; a batch that fails stores nothing and fails every caller in it; duplicates
and bursts inside one batch collapse as they do across batches.
"""

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from kiosk.webhooks import inbox, signature
from tests.support import Api, child_env
from tests.support.config import WEBHOOK_SECRET
from tests.support.stack import rows

TASK = "payments.process_notification"
KILL = "ORD0KILLBATCH"


def seed(database_url: str, *provider_orders: str) -> None:
    """A pending order with a payment intent on each provider order."""
    with psycopg.connect(database_url) as conn:
        for provider_order in provider_orders:
            order_id = uuid.uuid4()
            conn.execute(
                "INSERT INTO orders (id, total_cents, expires_at) "
                "VALUES (%s, 250, now() + interval '1 hour')",
                (order_id,),
            )
            conn.execute(
                "INSERT INTO payment_intents (id, order_id, terminal_id, provider_order_id, "
                "idempotency_key, external_reference, amount_cents, status) "
                "VALUES (%s, %s, %s, %s, %s, %s, 250, 'at_terminal')",
                (
                    uuid.uuid4(),
                    order_id,
                    f"T-{provider_order}",
                    provider_order,
                    f"key-{provider_order}",
                    f"ref-{provider_order}",
                ),
            )


def body(notification_id: str | int, data_id: str) -> bytes:
    return json.dumps(
        {
            "id": notification_id,
            "type": "order",
            "action": "order.processed",
            "data": {"id": data_id},
        }
    ).encode()


def notification(notification_id: str | int, data_id: str) -> inbox.Notification:
    return inbox.parse(body(notification_id, data_id), data_id, "order", str(uuid.uuid4()))


def stored(database_url: str) -> tuple[list[dict], list[dict]]:
    return (
        rows(
            database_url,
            "SELECT notification_id, state, job_id, resource_id, "
            "xmin::text AS xid FROM webhook_inbox ORDER BY id",
        ),
        rows(
            database_url,
            "SELECT id, queueing_lock, args FROM procrastinate_jobs "
            "WHERE task_name = %s ORDER BY id",
            (TASK,),
        ),
    )


@pytest.fixture
def killer(database_url: str) -> Iterator[None]:
    """A real failure in the middle of a batch: deferring a job for KILL ends the session.

    The trigger runs after the batch's inbox rows were inserted, in the same transaction.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION test_kill_session() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_terminate_backend(pg_backend_pid());
                PERFORM pg_sleep(5);  -- the termination lands here
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_kill_session BEFORE INSERT ON procrastinate_jobs FOR EACH ROW
                WHEN (NEW.args->>'provider_order_id' = '{KILL}')
                EXECUTE FUNCTION test_kill_session();
        """)
    try:
        yield
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "DROP TRIGGER test_kill_session ON procrastinate_jobs;"
                "DROP FUNCTION test_kill_session()"
            )


# -- in this process: the batcher on the kiosk pool ------------------------------------------------


async def test_concurrent_notifications_share_one_transaction(pool, database_url):
    orders = [f"ORD0GROUP{n}" for n in range(30)]
    seed(database_url, *orders)
    before = inbox.batcher().batches
    results = await asyncio.gather(
        *(inbox.accept(notification(f"g-{n}", order)) for n, order in enumerate(orders))
    )
    assert [r.state for r in results] == ["received"] * 30
    assert inbox.batcher().batches - before < 30  # grouped: fewer transactions than notifications
    notes, jobs = stored(database_url)
    assert len({row["xid"] for row in notes}) == inbox.batcher().batches - before
    # Each answer names its own row and its own job, committed (read from another connection).
    assert {r.inbox_id for r in results} == set(range(1, 31))
    assert sorted(r.job_id for r in results) == [job["id"] for job in jobs]
    by_id = {job["id"]: job for job in jobs}
    for n, result in enumerate(results):
        job = by_id[result.job_id]
        assert job["queueing_lock"] == f"mp-order-{orders[n]}"
        assert job["args"] == {"provider_order_id": orders[n]}
    assert {row["job_id"] for row in notes} == set(by_id)


async def test_duplicates_and_bursts_inside_one_batch_collapse(pool, database_url):
    seed(database_url, "ORD0DUP", "ORD0OTHER")
    batch = [notification(777, "ORD0DUP") for _ in range(20)] + [
        notification(778, "ORD0DUP"),
        notification(779, "ORD0DUP"),
        notification(780, "ORD0OTHER"),
        notification(781, "ORD0UNKNOWN"),
    ]
    results = await inbox.store(batch)
    states = [r.state for r in results]
    assert states == ["received"] + ["duplicate"] * 19 + ["received"] * 4
    notes, jobs = stored(database_url)
    assert [(n["notification_id"], n["state"]) for n in notes] == [
        ("777", "received"),
        ("778", "received"),
        ("779", "received"),
        ("780", "received"),
        ("781", "received"),
    ]
    # One job per provider order: the first notification deferred it, the burst is covered by it.
    # An order no intent knows gets its job too: it reads the order and matches its reference.
    assert [job["queueing_lock"] for job in jobs] == [
        "mp-order-ORD0DUP",
        "mp-order-ORD0OTHER",
        "mp-order-ORD0UNKNOWN",
    ]
    assert [r.job_id for r in results if r.job_id] == [job["id"] for job in jobs]
    assert len({n["xid"] for n in notes}) == 1

    # Again later (a job now waits for each order): duplicates stay no-ops, new ones collapse.
    again = await inbox.store([notification(777, "ORD0DUP"), notification(782, "ORD0DUP")])
    assert [(r.state, r.job_id) for r in again] == [("duplicate", None), ("received", None)]
    assert len(stored(database_url)[1]) == 3


async def test_twenty_concurrent_copies_make_one_row_and_one_job(pool, database_url):
    seed(database_url, "ORD0COPIES")
    results = await asyncio.gather(
        *(inbox.accept(notification(424242, "ORD0COPIES")) for _ in range(20))
    )
    assert sorted(r.state for r in results) == ["duplicate"] * 19 + ["received"]
    notes, jobs = stored(database_url)
    assert len(notes) == 1 and len(jobs) == 1 and notes[0]["job_id"] == jobs[0]["id"]


async def test_a_database_failure_fails_the_whole_batch_and_stores_nothing(
    pool, database_url, killer
):
    orders = [f"ORD0FAIL{n}" for n in range(9)]
    seed(database_url, KILL, *orders)
    batch = [notification(f"f-{n}", order) for n, order in enumerate(orders)]
    batch.insert(4, notification("f-kill", KILL))
    results = await asyncio.gather(*(inbox.accept(n) for n in batch), return_exceptions=True)
    assert all(isinstance(r, psycopg.OperationalError) for r in results), results
    assert stored(database_url) == ([], [])  # not a row, not a job: nothing half-way
    # The pool drops the dead connection; the next batch (without KILL) is stored.
    results = await asyncio.gather(*(inbox.accept(n) for n in batch if n.resource_id != KILL))
    assert [r.state for r in results] == ["received"] * 9
    assert len(stored(database_url)[1]) == 9


async def test_one_row_the_database_refuses_does_not_sink_its_batch(pool, database_url):
    """parse() refuses what PostgreSQL would; should one slip through, the others are stored."""
    seed(database_url, "ORD0GOOD1", "ORD0GOOD2")
    bad = inbox.Notification("bad", "order", None, "ORD0GOOD1", None, {}, '{"x": "\\u0000"}')
    results = await inbox.store([notification(1, "ORD0GOOD1"), bad, notification(2, "ORD0GOOD2")])
    assert [getattr(r, "state", None) for r in results] == ["received", None, "received"]
    assert isinstance(results[1], psycopg.DataError)
    assert [n["notification_id"] for n in stored(database_url)[0]] == ["1", "2"]


# -- through uvicorn: every 200 is committed with its job; a failed batch answers 503 ------------


@pytest.fixture(scope="module")
def api(database_url, tmp_path_factory) -> Iterator[Api]:
    server = Api(child_env(database_url), tmp_path_factory.mktemp("batching-api"))
    yield server
    server.stop()


def send_all(url: str, items: list[tuple[str, str]]) -> list[httpx.Response]:
    """POST signed notifications all at once (one thread each, released together)."""
    barrier = threading.Barrier(len(items))

    def send(item: tuple[str, str]) -> httpx.Response:
        notification_id, data_id = item
        request_id = str(uuid.uuid4())
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            return client.post(
                f"{url}/webhooks/mercadopago",
                params={"data.id": data_id, "type": "order"},
                content=body(notification_id, data_id),
                headers={
                    "x-signature": signature.header(WEBHOOK_SECRET, data_id, request_id),
                    "x-request-id": request_id,
                    "content-type": "application/json",
                },
            )

    with ThreadPoolExecutor(len(items)) as executor:
        return list(executor.map(send, items))


def test_concurrent_requests_are_grouped_and_each_200_is_committed(api, database_url):
    items = [(f"h-{n}", f"ORD0HTTP{n}") for n in range(40)]
    seed(database_url, *(data_id for _, data_id in items))
    responses = send_all(api.url, items)
    assert [r.status_code for r in responses] == [200] * 40
    assert {r.json()["status"] for r in responses} == {"received"}
    notes, jobs = stored(database_url)
    assert sorted(n["notification_id"] for n in notes) == sorted(i for i, _ in items)
    assert len(jobs) == 40 and {n["job_id"] for n in notes} == {j["id"] for j in jobs}
    for note in notes:
        assert {"mp-order-" + note["resource_id"]} == {
            j["queueing_lock"] for j in jobs if j["id"] == note["job_id"]
        }
    assert len({n["xid"] for n in notes}) < 40  # fewer commits than requests


def test_a_failed_batch_answers_503_and_keeps_nothing_of_it(api, database_url, killer):
    items = [(f"k-{n}", f"ORD0HTTPK{n}") for n in range(15)] + [("k-kill", KILL)]
    seed(database_url, *(data_id for _, data_id in items))
    responses = send_all(api.url, items)
    codes = {item[0]: r.status_code for item, r in zip(items, responses, strict=True)}
    assert codes["k-kill"] == 503 and set(codes.values()) <= {200, 503}
    assert responses[-1].json() == {"detail": "database unavailable"}
    notes, jobs = stored(database_url)
    # Every 200 has its row and job; every 503 left nothing (Mercado Pago sends it again).
    assert sorted(n["notification_id"] for n in notes) == sorted(
        k for k, code in codes.items() if code == 200
    )
    assert len(jobs) == len(notes) and all(n["job_id"] for n in notes)
    # The retry succeeds for everything but the poisoned order.
    retry = [item for item in items if codes[item[0]] == 503 and item[1] != KILL]
    if retry:
        assert {r.status_code for r in send_all(api.url, retry)} == {200}
    assert len(stored(database_url)[0]) == 15
