"""Worker middleware: what a job's log lines say about it, and its trace span when tracing is on.

Outermost of the worker middlewares (kiosk/queue.py), so the outcome bookkeeping inside it logs
and traces as part of the job. Every line written while the job runs carries job_id, task, queue
and attempt, plus the ids among its arguments (order_id, provider_order_id, ...); code that learns
more binds it (`kiosk.logs.bind(schedule_id=...)`). The context is the job's alone: each job runs
in a task of its own, and the fields are reset when it ends.
"""

from __future__ import annotations

from typing import Any

from procrastinate import job_context

from kiosk import logs, tracing

# Task arguments that name something an operator searches logs for.
ID_ARGUMENTS = ("order_id", "provider_order_id", "intent_id", "run_id", "schedule_id", "export_id")


async def job_context_middleware(
    call_next: Any, context: job_context.JobContext, worker: Any
) -> Any:
    job = context.job
    fields: dict[str, object] = {
        "job_id": job.id,
        "task": job.task_name,
        "queue": job.queue,
        "attempt": job.attempts + 1,
    }
    for name in ID_ARGUMENTS:
        value = job.task_kwargs.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            fields[name] = value
    token = logs.start(**fields)
    try:
        if tracing.ENABLED:
            from kiosk.tracing import jobs as traced

            return await traced.run(call_next, context)
        return await call_next()
    finally:
        logs.reset(token)
