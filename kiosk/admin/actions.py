"""Admin actions that change something, each written to the audit log in the same transaction.

The JSON API and the dashboard both go through here, so an action and its audit entry are the
same whichever surface the operator used. The audited actions of other areas live with their
area (`exports.request_by`, `deliveries.resend_by`), so those areas never import kiosk.admin.
"""

from __future__ import annotations

import psycopg

from kiosk import audit
from kiosk.admin import jobs, periodic
from kiosk.audit import Operator


async def retry_job(conn: psycopg.AsyncConnection, job_id: int, by: Operator) -> str:
    """Raises JobNotFound or JobStateConflict (nothing recorded then)."""
    await jobs.retry_job(conn, job_id)
    await audit.record_by(conn, by, "job.retry", f"job:{job_id}", {"result": "retried"})
    return "retried"


async def cancel_job(conn: psycopg.AsyncConnection, job_id: int, by: Operator) -> str:
    """`cancelled` or `abort_requested`; raises JobNotFound or JobStateConflict."""
    result = await jobs.cancel_job(conn, job_id)
    await audit.record_by(conn, by, "job.cancel", f"job:{job_id}", {"result": result})
    return result


async def bulk(
    conn: psycopg.AsyncConnection, action: str, flt: jobs.JobFilter, by: Operator
) -> jobs.BulkResult:
    """`retry` or `cancel` every job matching a non-empty filter."""
    if flt.is_empty():
        raise ValueError("a bulk action needs at least one filter")
    operation = {"retry": jobs.bulk_retry, "cancel": jobs.bulk_cancel}[action]
    result = await operation(conn, flt)
    await audit.record_by(
        conn,
        by,
        f"jobs.bulk_{action}",
        "jobs",
        {"filter": flt.describe(), "changed": len(result.changed), "skipped": len(result.skipped)},
    )
    return result


async def run_periodic(conn: psycopg.AsyncConnection, name: str, by: Operator) -> int | None:
    """The deferred job's id, or None when one is already waiting (queueing lock): nothing recorded.

    Raises PeriodicNotFound.
    """
    job_id = await periodic.run_now(conn, name)
    if job_id is not None:
        await audit.record_by(conn, by, "periodic.run", f"periodic:{name}", {"job_id": job_id})
    return job_id
