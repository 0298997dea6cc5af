"""`GET /metrics`: Prometheus text for the queue, the workers, webhooks and HTTP latency.

Built on `prometheus_client` (its metric types and its text exposition, 0.0.4). Two kinds of
figures, and how each stays correct when the API runs as several processes:
- from the database at each scrape (`scrape` reads it, then yields metric families): jobs by
  queue and status, oldest runnable age, stalled jobs, recent failures, workers, the inbox
  backlog, refunds, payments needing attention, deliveries, failing schedules, queue controls
  (pause, limits, changes). Every API process
  reports the same values.
- job durations and job waits, counters built incrementally from `job_outcomes` rows (durations)
  and procrastinate's `started` events (waits) newer than the previous scrape, so pruning old rows
  never makes them go down; they start at zero when the process starts, like any counter.
- from this process: HTTP request latency (middleware) and webhook acknowledgements by outcome,
  in `prometheus_client` metrics of this module's own registry. Measured per webhook (one latency
  observation and one counter increment): 2.9 us with prometheus_client 0.26 against 2.3 us with
  the hand-written registry it replaced, noise beside the request's own CPU.

Run one API process per container (scale with replicas): with `uvicorn --workers N` a scrape
sees the in-process figures of whichever process answers (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import prometheus_client
import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from kiosk import db
from kiosk.admin import jobs as admin_jobs
from kiosk.notifications import deliveries as notification_deliveries
from kiosk.payments import attention as payment_attention
from kiosk.payments import refunds as payment_refunds
from kiosk.queues import service as queue_service
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.metrics")
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Seconds: from a fast webhook acknowledgement to a slow export.
DEFAULT_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# No `*_created` series: the documented metrics are the counters and histograms themselves.
# (prometheus_client leaves it unannotated: it takes nothing and returns None.)
cast(Callable[[], None], prometheus_client.disable_created_metrics)()

# This module's registry, not the library's global one: /metrics shows the documented metrics
# only (no process or platform collectors another import might have registered).
REGISTRY = CollectorRegistry(auto_describe=False)
HTTP_LATENCY = Histogram(
    "kiosk_http_request_duration_seconds",
    "HTTP requests served by this process",
    ("method", "route", "status"),
    buckets=DEFAULT_BUCKETS,
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "kiosk_webhook_notifications_total",
    "Mercado Pago notifications answered by this process, by outcome",
    ("outcome",),
    registry=REGISTRY,
)


# Seconds a job waited to start: from LISTEN/NOTIFY pick-ups to a backlog of an hour.
WAIT_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
# A scrape reads at most this many new procrastinate events; the rest wait for the next scrape
# (the counters lag, they never skip), so a scrape after a long pause stays cheap.
WAIT_EVENTS_PER_SCRAPE = 50_000


@dataclass
class _Incremental:
    """A histogram counted from database rows newer than a cursor, since this process's first
    scrape: per-bucket counts (+Inf last) and sum per label values. It only goes up, whatever
    is pruned from the table it reads."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]
    cursor: int | None = None  # the row id counted up to
    series: dict[tuple[str, ...], tuple[list[float], float]] = field(default_factory=dict)

    def add(self, key: tuple[str, ...], bucket: int, count: float, total: float) -> None:
        counts, summed = self.series.get(key) or ([0.0] * (len(self.buckets) + 1), 0.0)
        counts[bucket] += count
        self.series[key] = (counts, summed + total)

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, (counts, summed) in sorted(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(
                (*map(floatToGoString, self.buckets), "+Inf"), counts, strict=True
            ):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(key), buckets, summed)
        return family


_durations = _Incremental(
    "kiosk_job_duration_seconds",
    "Job attempts by task and outcome status, from job_outcomes since this process started",
    ("task", "status"),
    DEFAULT_BUCKETS,
)
_waits = _Incremental(
    "kiosk_job_wait_seconds",
    "Time from when a job could start (deferred, scheduled or retry time) to its start, by queue "
    "and task, from procrastinate_events since this process started",
    ("queue", "task"),
    WAIT_BUCKETS,
)
_lock = asyncio.Lock()


async def _scalar(conn: psycopg.AsyncConnection, query_name: str, column: str) -> Any:
    """One column of an aggregate query's single row."""
    return (await db.fetch_row(conn, QUERIES[query_name]))[column]  # an aggregate always answers


async def _collect_outcomes(conn: psycopg.AsyncConnection) -> None:
    head = await db.fetch_value(conn, int, QUERIES["outcomes_head"])
    if _durations.cursor is None:  # first scrape: count from now on
        _durations.cursor = head
        return
    if head <= _durations.cursor:
        return
    rows = await db.fetch_all(
        conn,
        QUERIES["outcome_buckets"],
        {"bounds": list(DEFAULT_BUCKETS), "after": _durations.cursor, "until": head},
    )
    for row in rows:
        _durations.add((row["task_name"], row["status"]), row["bucket"], row["n"], row["total"])
    _durations.cursor = head


async def _collect_waits(conn: psycopg.AsyncConnection) -> None:
    """Count the job starts among procrastinate events settled since the previous scrape.

    Read from procrastinate's own events, which every worker writes as it takes a job, so the
    API process that answers the scrape sees all workers' starts, and a wait is counted when
    its job starts, not when it ends.
    """
    head: int = await _scalar(conn, "events_head", "id")
    if _waits.cursor is None:  # first scrape: count from now on
        _waits.cursor = head
        return
    until = min(head, _waits.cursor + WAIT_EVENTS_PER_SCRAPE)
    if until <= _waits.cursor:
        return
    rows = await db.fetch_all(
        conn,
        QUERIES["wait_buckets"],
        {"bounds": list(WAIT_BUCKETS), "after": _waits.cursor, "until": until},
    )
    for row in rows:
        _waits.add((row["queue_name"], row["task_name"]), row["bucket"], row["n"], row["total"])
    _waits.cursor = until


async def _database_families(conn: psycopg.AsyncConnection) -> list[Metric]:
    """The figures read from the database now, as metric families."""
    jobs = GaugeMetricFamily(
        "kiosk_jobs", "Jobs in procrastinate_jobs by queue and status", labels=("queue", "status")
    )
    oldest = GaugeMetricFamily(
        "kiosk_queue_oldest_runnable_age_seconds",
        "Age of the oldest job that could run now, per queue",
        labels=("queue",),
    )
    stalled = GaugeMetricFamily(
        "kiosk_jobs_stalled",
        "Running jobs whose worker is gone or silent past KIOSK_WORKER_STALLED_AFTER, per queue",
        labels=("queue",),
    )
    finished = GaugeMetricFamily(
        "kiosk_jobs_finished_recent",
        "Jobs finished per queue over the last window",
        labels=("queue", "status", "window"),
    )
    stalled_by_queue = {
        row["queue_name"]: row["n"]
        for row in await db.fetch_all(
            conn, QUERIES["stalled_jobs"], {"after": get_settings().worker_stalled_after}
        )
    }
    for queue in await admin_jobs.list_queues(conn):
        stalled.add_metric((queue.name,), stalled_by_queue.pop(queue.name, 0))
        for status, count in queue.counts.items():
            jobs.add_metric((queue.name, status), count)
        if queue.oldest_runnable_age_seconds is not None:
            oldest.add_metric((queue.name,), queue.oldest_runnable_age_seconds)
        for status in ("succeeded", "failed"):
            for window in ("5m", "60m"):
                finished.add_metric(
                    (queue.name, status, window), getattr(queue, f"{status}_{window}")
                )
    for name, count in stalled_by_queue.items():  # a queue list_queues did not see (a race)
        stalled.add_metric((name,), count)

    workers = GaugeMetricFamily(
        "kiosk_workers", "procrastinate workers by heartbeat freshness", labels=("state",)
    )
    states = {"live": 0, "stalled": 0}
    for worker in await admin_jobs.list_workers(
        conn, stale_after=get_settings().worker_stale_seconds
    ):
        states["stalled" if worker["stalled"] else "live"] += 1
    for state, count in states.items():
        workers.add_metric((state,), count)

    backlog = GaugeMetricFamily(
        "kiosk_webhook_inbox_backlog",
        "Accepted notifications not processed yet",
        value=await db.fetch_value(conn, int, QUERIES["inbox_backlog"]),
    )

    refund_states = {"refunded": 0, "pending": 0, "failed": 0} | await payment_refunds.counts(conn)
    # refunded is final: the count only goes up, in every API process alike.
    refunds = CounterMetricFamily(
        "kiosk_refunds",
        "Refunds of money the kiosk could not honour, made",
        value=refund_states.pop("refunded"),
    )
    open_refunds = GaugeMetricFamily(
        "kiosk_refunds_open",
        "Refunds decided and not made yet: pending (its job "
        "runs) or failed (Mercado Pago refused; an operator looks)",
        labels=("state",),
    )
    for state, count in refund_states.items():
        open_refunds.add_metric((state,), count)

    attention = GaugeMetricFamily(
        "kiosk_payments_attention",
        "Payments needing an operator (GET /admin/payments/attention), by kind",
        labels=("kind",),
    )
    for kind, count in (await payment_attention.count_by_kind(conn)).items():
        attention.add_metric((kind,), count)

    deliveries = GaugeMetricFamily(
        "kiosk_deliveries",
        "Receipts and order-paid hooks not sent, by state "
        "(failed: given up or refused, listed for an operator)",
        labels=("state",),
    )
    for state, count in (await notification_deliveries.count_by_state(conn)).items():
        deliveries.add_metric((state,), count)

    schedules = GaugeMetricFamily(
        "kiosk_schedules_failing",
        "Active schedules whose latest finished run did not succeed",
        value=await _scalar(conn, "failing_schedules", "n"),
    )
    return [
        jobs,
        oldest,
        stalled,
        finished,
        workers,
        backlog,
        refunds,
        open_refunds,
        attention,
        deliveries,
        schedules,
        *await _queue_control_families(conn),
    ]


async def _queue_control_families(conn: psycopg.AsyncConnection) -> list[Metric]:
    """Pause state and limits of every known queue, and the changes made to them (docs/metrics.md).

    The counter is the rows' own `changes` column, bumped by every write whichever process made it
    (API, dashboard, `kiosk queues`, defaults at start-up): the same value in every API process.
    """
    paused = GaugeMetricFamily(
        "kiosk_queue_paused",
        "1 while the queue is paused (no new job of it starts)",
        labels=("queue",),
    )
    rate = GaugeMetricFamily(
        "kiosk_queue_max_per_second",
        "Most job starts per second of the queue across all workers (absent: no limit)",
        labels=("queue",),
    )
    running = GaugeMetricFamily(
        "kiosk_queue_max_running",
        "Most jobs of the queue running at once across all workers (absent: no limit)",
        labels=("queue",),
    )
    changes = CounterMetricFamily(
        "kiosk_queue_control_changes",
        "Changes to the queue's controls: pauses, resumes, limits (operators and defaults)",
        labels=("queue",),
    )
    for control in await queue_service.list_controls(conn):
        paused.add_metric((control.name,), 1 if control.paused else 0)
        if control.max_per_second is not None:
            rate.add_metric((control.name,), control.max_per_second)
        if control.max_running is not None:
            running.add_metric((control.name,), control.max_running)
        changes.add_metric((control.name,), control.changes)
    return [paused, rate, running, changes]


class _Snapshot(Collector):
    """One scrape's families, then this process's registry: what `generate_latest` collects."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> Iterable[Metric]:
        yield from self.families
        yield from REGISTRY.collect()


async def scrape() -> str:
    """The whole exposition: database figures read now, job durations and waits, this process's
    metrics."""
    async with _lock, db.transaction() as conn:
        families = await _database_families(conn)
        await _collect_outcomes(conn)
        await _collect_waits(conn)
        families.extend((_durations.family(), _waits.family()))
    return prometheus_client.generate_latest(_Snapshot(families)).decode()


def sample(name: str, **labels: str) -> float | None:
    """One sample of this process's own metrics (tests and drills), None when absent."""
    return REGISTRY.get_sample_value(name, labels)
