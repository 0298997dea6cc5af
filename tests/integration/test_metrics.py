"""GET /metrics: parses as Prometheus text (the reference parser), numbers match the database."""

import httpx
import psycopg
import pytest
from procrastinate.jobs import Status
from prometheus_client.parser import text_string_to_metric_families

from kiosk import db, queue
from tests.support import Api, child_env
from tests.support.config import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(url: str) -> dict[tuple, float]:
    """GET /metrics with the admin token, parsed."""
    async with httpx.AsyncClient() as http:
        return samples((await http.get(f"{url}/metrics", headers=AUTH)).text)


def key(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items())))


@pytest.fixture
def api(env, log_dir):
    server = Api(env, log_dir)
    yield server
    server.stop()


def test_metrics_need_a_token(api, log_dir, database_url):
    assert httpx.get(f"{api.url}/metrics").status_code == 401
    assert (
        httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert httpx.get(f"{api.url}/metrics", headers=AUTH).status_code == 200
    scoped = Api(child_env(database_url, KIOSK_METRICS_TOKEN="scrape-token-0123456789"), log_dir)
    try:
        assert httpx.get(f"{scoped.url}/metrics", headers=AUTH).status_code == 401
        ok = httpx.get(
            f"{scoped.url}/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}
        )
        assert ok.status_code == 200 and ok.headers["content-type"].startswith(
            "text/plain; version=0.0.4"
        )
    finally:
        scoped.stop()


async def test_numbers_match_the_database(api, pool, database_url):
    manager = queue.app.job_manager
    async with db.transaction() as conn:
        for n in range(4):
            await queue.defer(conn, "metrics.demo", queue="mq", n=n)
    live = await manager.register_worker()
    stalled = await manager.register_worker()
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
            "WHERE id = %s",
            (stalled,),
        )
    for status in (Status.SUCCEEDED, Status.FAILED):
        job = await manager.fetch_job(queues=None, worker_id=live)
        await manager.finish_job(job, status=status, delete_job=False)
    await manager.fetch_job(queues=None, worker_id=live)  # one doing, one todo left

    async with httpx.AsyncClient(base_url=api.url) as http:
        await http.get("/orders/not-a-uuid", headers=AUTH)  # a 4xx on a templated route
        unsigned = await http.post("/webhooks/mercadopago?data.id=ORD1&type=order", json={"id": 1})
    assert unsigned.status_code == 401
    values = await scrape(api.url)

    with psycopg.connect(database_url) as conn:
        by_status = dict(
            conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs "
                "WHERE queue_name = 'mq' GROUP BY 1"
            ).fetchall()
        )
    for status in ("todo", "doing", "succeeded", "failed"):
        assert (
            values[("kiosk_jobs", (("queue", "mq"), ("status", status)))] == by_status[status] == 1
        )
    assert values[("kiosk_jobs", (("queue", "mq"), ("status", "cancelled")))] == 0
    assert values[("kiosk_queue_oldest_runnable_age_seconds", (("queue", "mq"),))] >= 0
    assert (
        values[
            (
                "kiosk_jobs_finished_recent",
                (("queue", "mq"), ("status", "failed"), ("window", "5m")),
            )
        ]
        == 1
    )
    assert values[("kiosk_workers", (("state", "live"),))] == 1
    assert values[("kiosk_workers", (("state", "stalled"),))] == 1
    assert values[("kiosk_webhook_inbox_backlog", ())] == 0
    assert values[key("kiosk_webhook_notifications_total", outcome="bad_signature")] == 1
    route = {"method": "GET", "route": "/orders/{order_id}", "status": "422"}
    assert values[key("kiosk_http_request_duration_seconds_count", **route)] == 1
    assert values[key("kiosk_http_request_duration_seconds_bucket", le="+Inf", **route)] == 1


async def test_job_durations_count_new_outcomes_only(api, pool, database_url):
    """Outcomes settled after the first scrape are counted once, in the right bucket."""
    await scrape(api.url)  # the first scrape starts the counters at zero
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO job_outcomes (job_id, attempt, task_name, queue_name, status, started_at,
                                      ended_at, duration_seconds)
            SELECT n, 1, 'metrics.slow', 'default',
                   CASE WHEN n <= 3 THEN 'succeeded' ELSE 'failed' END,
                   now() - interval '1 minute', now() - interval '1 minute', 0.2
            FROM generate_series(1, 4) AS n
            UNION ALL  -- too recent to count yet: it may sit behind an uncommitted neighbour
            SELECT 99, 1, 'metrics.slow', 'default', 'succeeded', now(), now(), 0.2
            """
        )
    values = await scrape(api.url)
    ok = {"task": "metrics.slow", "status": "succeeded"}
    assert values[key("kiosk_job_duration_seconds_count", **ok)] == 3
    assert values[key("kiosk_job_duration_seconds_bucket", le="0.1", **ok)] == 0
    assert values[key("kiosk_job_duration_seconds_bucket", le="0.25", **ok)] == 3
    assert values[key("kiosk_job_duration_seconds_sum", **ok)] == pytest.approx(0.6)
    assert (
        values[key("kiosk_job_duration_seconds_count", task="metrics.slow", status="failed")] == 1
    )

    # Pruning old outcomes never lowers a counter.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM job_outcomes WHERE job_id <= 3")
    again = await scrape(api.url)
    assert again[key("kiosk_job_duration_seconds_count", **ok)] == 3
