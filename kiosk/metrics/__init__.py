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
PAYMENT_QUERIES = load_queries("kiosk.payments")
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
    refunds = Counter("kiosk_refunds_total", "Refunds of money the kiosk could not honour, made")
    open_refunds = Gauge("kiosk_refunds_open", "Refunds decided and not made yet: pending (its job "
                         "runs) or failed (Mercado Pago refused; an operator looks)", ("state",))
    attention = Gauge("kiosk_payments_attention", "Payments needing an operator (GET "
                      "/admin/payments/attention), by kind", ("kind",))
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
        states = {"refunded": 0, "pending": 0, "failed": 0}
        for row in await db.fetch_all(conn, PAYMENT_QUERIES["refund_counts"]):
            states[row["refund_status"]] = row["n"]
        refunds.set(states.pop("refunded"))  # refunded is final: the count only goes up
        for state, count in states.items():
            open_refunds.set(count, state)
        kinds = {"unresolved": 0, "refund": 0}
        for row in await db.fetch_all(conn, PAYMENT_QUERIES["attention"], {
                "age": get_settings().payment_attention_after_seconds, "limit": 10_000}):
            kinds[row["kind"]] += 1
        for kind, count in kinds.items():
            attention.set(count, kind)
        for state, count in (await notification_deliveries.count_by_state(conn)).items():
            delivery_states.set(count, state)
        await _collect_outcomes(conn)

    return render([jobs, oldest, finished, workers, backlog, refunds, open_refunds, attention, delivery_states,
                   JOB_DURATION, WEBHOOKS, HTTP_LATENCY])
