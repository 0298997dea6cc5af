"""GET /metrics: parses as Prometheus text (the reference parser), numbers match the database."""

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from procrastinate.jobs import Status
from prometheus_client.parser import text_string_to_metric_families

from kiosk import db, queue
from tests.support import Api, child_env, wait_for
from tests.support.config import ADMIN_TOKEN
from tests.support.jobs import AppWorker, defer

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


def scrape_api(api: Api) -> dict[tuple, float]:
    return samples(httpx.get(f"{api.url}/metrics", headers=AUTH).text)


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


async def test_job_waits_from_when_each_start_could_happen(api, pool, database_url, log_dir):
    """Real worker: a wait runs from the defer, the scheduled time when later, or the retry."""
    scrape_api(api)  # the first scrape starts the counters at zero
    plain = await defer("tests.sync_ok", key="w1")
    scheduled = await defer("tests.big_result", size=1)
    retried = await defer("tests.flaky", key="w2")
    due_soon = await defer(
        "tests.sync_ok",
        key="w3",
        queue="later",
        schedule_at=datetime.now(UTC) + timedelta(seconds=2),
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        # No worker runs yet: make the waits long and known by moving the events back.
        for job_id, ago in ((plain, 100), (scheduled, 1000), (retried, 1000), (due_soon, 1000)):
            conn.execute(
                "UPDATE procrastinate_events SET at = now() - make_interval(secs => %s) "
                "WHERE job_id = %s AND type = 'deferred'",
                (ago, job_id),
            )
        # Deferred long ago, due 40 s ago (as procrastinate records a scheduled_at).
        conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '40 seconds' "
            "WHERE id = %s",
            (scheduled,),
        )
    worker = AppWorker(database_url, log_dir, "--fetch-job-polling-interval=0.5")
    try:

        def counted() -> dict | None:
            values = scrape_api(api)
            counts = (
                values.get(
                    key("kiosk_job_wait_seconds_count", queue="default", task="tests.flaky")
                ),
                values.get(
                    key("kiosk_job_wait_seconds_count", queue="later", task="tests.sync_ok")
                ),
            )
            return values if counts == (2, 1) else None

        values = wait_for(counted, timeout=60, interval=0.5, what="four jobs' starts counted")
    finally:
        worker.stop()

    def bucket(task: str, le: str) -> float:
        return values[key("kiosk_job_wait_seconds_bucket", queue="default", task=task, le=le)]

    assert values[key("kiosk_job_wait_seconds_count", queue="default", task="tests.sync_ok")] == 1
    assert (bucket("tests.sync_ok", "60.0"), bucket("tests.sync_ok", "120.0")) == (0, 1)
    # From its scheduled time (40 s ago), not from its defer (1000 s ago).
    assert (bucket("tests.big_result", "30.0"), bucket("tests.big_result", "60.0")) == (0, 1)
    # Deferred with a scheduled time (procrastinate's insert records it): from that time.
    later = key("kiosk_job_wait_seconds_bucket", queue="later", task="tests.sync_ok", le="60.0")
    assert values[later] == 1
    # The first attempt waited since the defer; the retry only since the first attempt failed.
    assert bucket("tests.flaky", "10.0") == 1 and bucket("tests.flaky", "600.0") == 1
    assert bucket("tests.flaky", "1800.0") == 2
    total = values[key("kiosk_job_wait_seconds_sum", queue="default", task="tests.flaky")]
    assert 1000 <= total < 1000 + 60

    # Pruning the jobs (their events go with them) never lowers a counter.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM procrastinate_jobs WHERE id = ANY(%s)",
            ([plain, scheduled, retried, due_soon],),
        )
    again = scrape_api(api)
    assert again[key("kiosk_job_wait_seconds_count", queue="default", task="tests.flaky")] == 2


async def test_stalled_jobs_and_failing_schedules(api, pool, database_url):
    manager = queue.app.job_manager
    async with db.transaction() as conn:
        for n in range(3):
            await queue.defer(conn, "metrics.demo", queue="mq", n=n)
    live = await manager.register_worker()
    dead = await manager.register_worker()
    await manager.fetch_job(queues=None, worker_id=live)  # running on a live worker
    await manager.fetch_job(queues=None, worker_id=dead)
    await manager.fetch_job(queues=None, worker_id=dead)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
            "WHERE id = %s",
            (dead,),
        )
        # Schedules: the latest finished run decides (runs ahead and in progress do not);
        # an inactive schedule is not failing.
        conn.execute(
            """
            INSERT INTO schedules (name, cron, method, url, timeout_seconds, max_attempts, active)
            VALUES ('ok-now', '* * * * *', 'GET', 'https://a.example', 5, 1, true),
                   ('broken', '* * * * *', 'GET', 'https://b.example', 5, 1, true),
                   ('paused', '* * * * *', 'GET', 'https://c.example', 5, 1, false)
            """
        )
        conn.execute(
            """
            INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for, outcome)
            SELECT s.id, 'manual', now() + r.offset_s * interval '1 minute', r.outcome
              FROM schedules s
              JOIN (VALUES ('ok-now', -2, 'failed'), ('ok-now', -1, 'success'),
                           ('ok-now', 0, 'running'), ('broken', -2, 'success'),
                           ('broken', -1, 'timeout'), ('broken', 1, 'pending'),
                           ('paused', -1, 'error')) AS r (name, offset_s, outcome)
                ON r.name = s.name
            """
        )
    values = scrape_api(api)
    assert values[key("kiosk_jobs_stalled", queue="mq")] == 2
    assert values[key("kiosk_schedules_failing")] == 1

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_workers WHERE id = %s", (dead,))  # pruned: gone
        conn.execute("UPDATE schedules SET active = false WHERE name = 'broken'")
    values = scrape_api(api)
    assert values[key("kiosk_jobs_stalled", queue="mq")] == 2
    assert values[key("kiosk_schedules_failing")] == 0
