"""`GET /metrics`: Prometheus text for the queue, the workers, webhooks and HTTP latency.

Two kinds of figures:
- from this process: HTTP request latency (middleware) and webhook acknowledgements by outcome;
- from the database at each scrape: jobs by queue and status, oldest runnable age, recent
  failures, workers, the inbox backlog, and job durations by task. Job durations are counters
  built incrementally from `job_outcomes` rows newer than the previous scrape, so pruning old
  rows never makes them go down; they start at zero when the process starts, like any counter.

Run one API process per container (scale with replicas): with `uvicorn --workers N` a scrape
sees the in-process figures of whichever process answers.
"""

from __future__ import annotations

import asyncio

import psycopg

from kiosk import db
from kiosk.admin import jobs as admin_jobs
from kiosk.metrics.registry import DEFAULT_BUCKETS, Counter, Gauge, Histogram, render
from kiosk.notifications import deliveries as notification_deliveries
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HTTP_LATENCY = Histogram("kiosk_http_request_duration_seconds", "HTTP requests served by this process",
                         ("method", "route", "status"))
WEBHOOKS = Counter("kiosk_webhook_notifications_total",
                   "Mercado Pago notifications answered by this process, by outcome", ("outcome",))
JOB_DURATION = Histogram("kiosk_job_duration_seconds",
                         "Job attempts by task and outcome status, from job_outcomes since this process started",
                         ("task", "status"))

_cursor: int | None = None
_lock = asyncio.Lock()


async def _collect_outcomes(conn: psycopg.AsyncConnection) -> None:
    global _cursor
    head = (await db.fetch_one(conn, QUERIES["outcomes_head"]))["id"]
    if _cursor is None:  # first scrape: count from now on
        _cursor = head
        return
    if head <= _cursor:
        return
    rows = await db.fetch_all(conn, QUERIES["outcome_buckets"],
                              {"bounds": list(DEFAULT_BUCKETS), "after": _cursor, "until": head})
    for row in rows:
        counts = [0.0] * (len(DEFAULT_BUCKETS) + 1)
        counts[row["bucket"]] = row["n"]
        JOB_DURATION.add_counts(counts, row["total"], row["task_name"], row["status"])
    _cursor = head


async def scrape() -> str:
    jobs = Gauge("kiosk_jobs", "Jobs in procrastinate_jobs by queue and status", ("queue", "status"))
    oldest = Gauge("kiosk_queue_oldest_runnable_age_seconds",
                   "Age of the oldest job that could run now, per queue", ("queue",))
    finished = Gauge("kiosk_jobs_finished_recent", "Jobs finished per queue over the last window",
                     ("queue", "status", "window"))
    workers = Gauge("kiosk_workers", "procrastinate workers by heartbeat freshness", ("state",))
    backlog = Gauge("kiosk_webhook_inbox_backlog", "Accepted notifications not processed yet")
    delivery_states = Gauge("kiosk_deliveries", "Receipts and order-paid hooks not sent, by state "
                            "(failed: given up or refused, listed for an operator)", ("state",))

    async with _lock, db.transaction() as conn:
        for queue in await admin_jobs.list_queues(conn):
            for status, count in queue.counts.items():
                jobs.set(count, queue.name, status)
            if queue.oldest_runnable_age_seconds is not None:
                oldest.set(queue.oldest_runnable_age_seconds, queue.name)
            for status in ("succeeded", "failed"):
                for window in ("5m", "60m"):
                    finished.set(getattr(queue, f"{status}_{window}"), queue.name, status, window)
        states = {"live": 0, "stalled": 0}
        for worker in await admin_jobs.list_workers(conn, stale_after=get_settings().worker_stale_seconds):
            states["stalled" if worker["stalled"] else "live"] += 1
        for state, count in states.items():
            workers.set(count, state)
        backlog.set((await db.fetch_one(conn, QUERIES["inbox_backlog"]))["n"])
        for state, count in (await notification_deliveries.count_by_state(conn)).items():
            delivery_states.set(count, state)
        await _collect_outcomes(conn)

    return render([jobs, oldest, finished, workers, backlog, delivery_states, JOB_DURATION, WEBHOOKS, HTTP_LATENCY])
