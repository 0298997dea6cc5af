"""Regression tests for what the failure drills found (docs/drills.md, "What the drills found")."""

from __future__ import annotations

import time
import uuid

import httpx
import psycopg
import psycopg_pool
import pytest
from procrastinate import exceptions
from procrastinate.jobs import Job

from kiosk import db, queue
from tasks.retry import Backoff
from tests.support import Api, child_env
from tests.support.config import ADMIN_TOKEN
from tests.support.stack import notify

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

TASK = "tests.probe"


# -- a job whose database went away is retried ----------------------------------------------------


def job(attempts: int = 0) -> Job:
    return Job(
        id=1, queue="default", lock=None, queueing_lock=None, task_name="t", attempts=attempts
    )


def wrapped(cause: BaseException) -> exceptions.ConnectorException:
    try:
        raise exceptions.ConnectorException() from cause
    except exceptions.ConnectorException as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        wrapped(psycopg.OperationalError("connection refused")),
    ],
)
def test_backoff_retries_a_lost_database(database_url, error):
    decision = Backoff(ValueError).get_retry_decision(exception=error, job=job())
    assert decision is not None


def test_backoff_still_fails_other_errors_and_stops_at_the_limit(database_url):
    strategy = Backoff(KeyError)
    assert strategy.get_retry_decision(exception=RuntimeError("bug"), job=job()) is None
    assert strategy.get_retry_decision(exception=wrapped(RuntimeError("bug")), job=job()) is None
    # KIOSK_PAYMENT_MAX_ATTEMPTS (8) runs in all: the 8th failure is final.
    assert strategy.get_retry_decision(exception=psycopg.OperationalError(), job=job(7)) is None


# -- a collapsed defer holds the waiting job until its transaction commits -------------------------


async def locked_out(job_id: int) -> bool:
    """What a worker's fetch sees: True when the job row is locked (SKIP LOCKED passes it over)."""
    async with db.pool().connection() as other:
        cursor = await other.execute(
            "SELECT id FROM procrastinate_jobs WHERE id = %s FOR UPDATE SKIP LOCKED", (job_id,)
        )
        return await cursor.fetchone() is None


async def test_a_collapsed_defer_holds_the_waiting_job_until_commit(pool):
    async with db.transaction() as conn:
        waiting = await queue.defer(conn, TASK, queueing_lock="hold-1", probe_id=1)
    assert waiting is not None
    async with db.transaction() as conn:
        assert await queue.defer(conn, TASK, queueing_lock="hold-1", probe_id=2) is None
        # Until this commits, no worker can start the waiting job: it would miss this transaction.
        assert await locked_out(waiting)
    assert not await locked_out(waiting)


async def test_a_defer_that_finds_the_waiting_job_started_defers_after_all(pool):
    async with db.transaction() as conn:
        first = await queue.defer(conn, TASK, queueing_lock="hold-2", probe_id=1)
    async with db.transaction() as conn:
        await conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (first,))
        second = await queue.defer(conn, TASK, queueing_lock="hold-2", probe_id=2)
    assert second is not None and second != first


# -- a charge whose answer was never recorded is resumed ------------------------------------------


def test_a_charge_started_while_the_database_went_away_is_resumed(kiosk, sim, database_url):
    kiosk.product("tea", price_cents=300, stock=3)
    order = kiosk.order({"tea": 1})
    first = kiosk.pay(order["id"])
    assert first.status_code == 201, first.text
    # What the database holds when it went away after the intent was written and Mercado Pago
    # created the charge, but before the answer was recorded (the client got a 503).
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE payment_intents SET provider_order_id = NULL, status = 'created', "
            "status_detail = NULL WHERE id = %s",
            (first.json()["id"],),
        )
    assert kiosk.pay(order["id"], terminal_id="ANOTHER").status_code == 409
    again = kiosk.pay(order["id"])
    assert again.status_code == 201, again.text
    # The same attempt and idempotency key: Mercado Pago answered with the charge it holds.
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["provider_order_id"] == first.json()["provider_order_id"]
    assert len(sim.get("/_sim/orders")) == 1
    keys = {r["idempotency_key"] for r in sim.get("/_sim/requests") if r["method"] == "POST"}
    assert len(keys) == 1


# -- the API answers 503 soon while the database is down -------------------------------------------


def test_requests_get_503_within_the_pool_timeout_when_the_database_is_down(database_url, log_dir):
    env = child_env(
        "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1", KIOSK_DB_POOL_TIMEOUT="1"
    )
    server = Api(env, log_dir)
    try:
        began = time.monotonic()
        response = httpx.get(f"{server.url}/orders/{uuid.uuid4()}", headers=ADMIN, timeout=30)
        assert response.status_code == 503 and response.json() == {"detail": "database unavailable"}
        assert time.monotonic() - began < 10
        response = httpx.post(
            f"{server.url}/orders",
            json={"items": [{"sku": "tea", "quantity": 1}]},
            headers=ADMIN,
            timeout=30,
        )
        assert response.status_code == 503
        # The webhook (served ahead of FastAPI's routing) answers the same: Mercado Pago retries.
        response = notify(server.url, "ORD01DOWN", 1)
        assert response.status_code == 503 and response.json() == {"detail": "database unavailable"}
    finally:
        server.stop()
