"""The trace context travels with the job: saved when it is deferred, continued when it runs.

`save` writes the W3C `traceparent` (and `tracestate`) of the current span, the request or job
that defers, into `kiosk_job_traces`, keyed by job id, on the deferring transaction's
connection: the row exists exactly when the job does (and goes with it: ON DELETE CASCADE).
`run`, called by the worker middleware (kiosk/jobs/context.py), reads it back and runs the job
in a CONSUMER span that continues that trace; a job deferred outside any trace (periodic
deferrers) starts a trace of its own. Imported only when tracing is on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from procrastinate import job_context

from kiosk import db
from kiosk.sql import load_queries

queries = load_queries("kiosk.tracing")
tracer = trace.get_tracer("kiosk.jobs")


def carrier(context: Context | None = None) -> dict[str, str]:
    """The W3C headers (`traceparent`, `tracestate`) of `context`, or of the current span."""
    headers: dict[str, str] = {}
    propagate.inject(headers, context=context)
    return headers


async def save(
    conn: psycopg.AsyncConnection,
    job_ids: Sequence[int | None],
    carriers: Sequence[dict[str, str] | None] | None = None,
) -> None:
    """Record the trace context of each deferred job (None ids: a job that was not deferred).

    `carriers`, one per job, when each job has its own origin (a webhook batch); else the
    current span's context for all."""
    current = carrier()
    rows = [
        (job_id, headers)
        for job_id, headers in zip(
            job_ids, carriers if carriers is not None else [current] * len(job_ids), strict=True
        )
        if job_id is not None and headers and headers.get("traceparent")
    ]
    if not rows:
        return
    await conn.execute(
        queries["save_job_traces"],
        {
            "job_ids": [job_id for job_id, _ in rows],
            "traceparents": [headers["traceparent"] for _, headers in rows],
            "tracestates": [headers.get("tracestate") for _, headers in rows],
        },
    )


async def _origin(job_id: int) -> Context | None:
    async with db.pool().connection() as conn:
        row = await db.fetch_one(conn, queries["job_trace"], {"job_id": job_id})
    if row is None:
        return None
    headers = {"traceparent": row["traceparent"]}
    if row["tracestate"]:
        headers["tracestate"] = row["tracestate"]
    return propagate.extract(headers)


async def run(call_next: Callable[[], Awaitable[Any]], context: job_context.JobContext) -> Any:
    """Run the job in its span, a child of the span that deferred it."""
    job = context.job
    if job.id is None:  # only a job never deferred has none: there is no trace to continue
        return await call_next()
    try:
        origin = await _origin(job.id)
    except Exception:  # noqa: BLE001 - a trace is never worth failing a job
        origin = None
    attributes: dict[str, Any] = {
        "messaging.system": "procrastinate",
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "kiosk.job.task": job.task_name,
        "kiosk.job.attempt": job.attempts + 1,
    }
    with tracer.start_as_current_span(
        f"job {job.task_name}", context=origin, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        return await call_next()
