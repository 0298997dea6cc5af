"""Admin actions that change something, each written to the audit log in the same transaction.

The JSON API and the dashboard both go through here, so an action and its audit entry are the
same whichever surface the operator used.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg

from kiosk import audit, exports
from kiosk.admin import jobs, periodic
from kiosk.audit import Operator
from kiosk.notifications import deliveries


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


async def bulk(conn: psycopg.AsyncConnection, action: str, flt: jobs.JobFilter, by: Operator) -> jobs.BulkResult:
    """`retry` or `cancel` every job matching a non-empty filter."""
    if flt.is_empty():
        raise ValueError("a bulk action needs at least one filter")
    operation = {"retry": jobs.bulk_retry, "cancel": jobs.bulk_cancel}[action]
    result = await operation(conn, flt)
    await audit.record_by(conn, by, f"jobs.bulk_{action}", "jobs",
                  {"filter": flt.describe(), "changed": len(result.changed), "skipped": len(result.skipped)})
    return result


async def run_periodic(conn: psycopg.AsyncConnection, name: str, by: Operator) -> int | None:
    """The deferred job's id, or None when one is already waiting (queueing lock): nothing recorded.

    Raises PeriodicNotFound.
    """
    job_id = await periodic.run_now(conn, name)
    if job_id is not None:
        await audit.record_by(conn, by, "periodic.run", f"periodic:{name}", {"job_id": job_id})
    return job_id


async def request_export(
    conn: psycopg.AsyncConnection, created_from: dt.datetime, created_to: dt.datetime, by: Operator
) -> dict[str, Any]:
    """Create an orders CSV export and defer its job; raises InvalidRange or ExportLimit (nothing recorded)."""
    export = await exports.request_export(conn, created_from, created_to, requested_by=by.name)
    details = {"from": created_from.isoformat(), "to": created_to.isoformat(), "job_id": export["job_id"]}
    if export["replaced"]:  # the oldest finished exports, deleted to stay under KIOSK_EXPORT_KEEP
        details["replaced"] = [str(export_id) for export_id in export["replaced"]]
    await audit.record_by(conn, by, "export.create", f"export:{export['id']}", details)
    return export


async def resend_delivery(conn: psycopg.AsyncConnection, order_id: uuid.UUID, kind: str, by: Operator) -> dict[str, Any]:
    """Send a given-up (`failed`) receipt or hook again; raises DeliveryNotFound or NotResendable
    (nothing recorded then)."""
    result = await deliveries.resend(conn, order_id, kind)
    await audit.record_by(conn, by, "delivery.resend", f"delivery:{order_id}/{kind}",
                          {"job_id": result["job_id"], "previous_attempts": result["previous_attempts"]})
    return result
