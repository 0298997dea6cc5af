"""Long jobs that report progress: CSV exports of orders."""

from __future__ import annotations

from typing import Any

from procrastinate import JobContext, RetryStrategy

from kiosk import exports
from kiosk.jobs import ids
from kiosk.queue import app
from kiosk.queues import names


@app.task(
    name=exports.TASK,
    queue=names.EXPORTS,
    pass_context=True,
    retry=RetryStrategy(max_attempts=3, exponential_wait=5),
)
async def orders_csv(context: JobContext, export_id: str) -> dict[str, Any]:
    job_id = ids.job_id(context.job)
    try:
        return await exports.run_export(export_id, job_id)
    except Exception as exc:
        # Visible on the export while the retry waits; a later run claims it again.
        await exports.fail_export(export_id, f"{type(exc).__name__}: {exc}")
        raise
