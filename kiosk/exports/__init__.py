"""CSV exports of orders in a date range, run as jobs that report progress.

An export row and its job commit together; the job streams the orders page by page (keyset, so
memory and locks stay small per page), reports progress after each page and stores the CSV on
the export row, which the admin API serves once the export is done.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from kiosk import db, progress, queue
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.exports")
TASK = "exports.orders_csv"
QUEUE = "exports"
MAX_RANGE = dt.timedelta(days=366)
COLUMNS = ("order_id", "created_at", "status", "total_cents", "customer_email", "paid_at", "items")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ExportNotFound(LookupError):
    pass


class ExportNotReady(Exception):
    """The export has not finished (HTTP 409)."""


class InvalidRange(ValueError):
    pass


@dataclass(frozen=True)
class Download:
    filename: str
    content: bytes


def check_range(created_from: dt.datetime, created_to: dt.datetime) -> None:
    if created_from.tzinfo is None or created_to.tzinfo is None:
        raise InvalidRange("from and to need a time zone, e.g. 2026-11-01T00:00:00Z")
    if created_to <= created_from:
        raise InvalidRange("to must be after from")
    if created_to - created_from > MAX_RANGE:
        raise InvalidRange("the range may span at most 366 days")


async def request_export(
    conn: psycopg.AsyncConnection, created_from: dt.datetime, created_to: dt.datetime, requested_by: str
) -> dict[str, Any]:
    """Create the export and defer its job in the caller's transaction."""
    check_range(created_from, created_to)
    export_id = uuid.uuid4()
    row = await db.fetch_one(conn, QUERIES["insert_export"], {
        "id": export_id, "created_from": created_from, "created_to": created_to,
        "requested_by": requested_by,
    })
    job_id = await queue.defer(conn, TASK, queue=QUEUE, export_id=str(export_id))
    await conn.execute(QUERIES["set_job"], {"id": export_id, "job_id": job_id})
    row["job_id"] = job_id
    return row


async def get_export(conn: psycopg.AsyncConnection, export_id: uuid.UUID) -> dict[str, Any]:
    row = await db.fetch_one(conn, QUERIES["get_export"], {"id": export_id})
    if row is None:
        raise ExportNotFound(export_id)
    return row


async def list_exports(conn: psycopg.AsyncConnection, limit: int = 50) -> list[dict[str, Any]]:
    return await db.fetch_all(conn, QUERIES["list_exports"], {"limit": limit})


async def download(conn: psycopg.AsyncConnection, export_id: uuid.UUID) -> Download:
    row = await db.fetch_one(conn, QUERIES["get_content"], {"id": export_id})
    if row is None:
        raise ExportNotFound(export_id)
    if row["status"] != "done":
        raise ExportNotReady(f"export {export_id} is {row['status']}; download it when done")
    span = f"{row['created_from']:%Y%m%d}-{row['created_to']:%Y%m%d}"
    return Download(filename=f"orders-{span}-{str(export_id)[:8]}.csv", content=bytes(row["content"]))


def _cell(value: Any) -> Any:
    # A text cell starting with = + - @ would run as a formula in a spreadsheet: neutralise it.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return "" if value is None else value


async def run_export(export_id: str, job_id: int, page_size: int = 500) -> dict[str, Any]:
    """The job: write the CSV page by page, reporting progress; idempotent when re-run."""
    async with db.transaction() as conn:
        claim = await db.fetch_one(conn, QUERIES["start_export"], {"id": export_id})
        if claim is None:
            row = await get_export(conn, uuid.UUID(export_id))  # done already, or unknown
            return {"export_id": export_id, "rows": row["row_count"], "already_done": True}
        total = (await db.fetch_one(conn, QUERIES["count_orders"], claim))["total"]
    await progress.report(job_id, 0, f"exporting {total} orders")

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    done, after = 0, (_EPOCH, uuid.UUID(int=0))
    while True:
        async with db.transaction() as conn:
            rows = await db.fetch_all(conn, QUERIES["orders_page"], {
                **claim, "after_created_at": after[0], "after_id": after[1], "limit": page_size,
            })
        for row in rows:
            writer.writerow([_cell(row[c]) for c in ("id", "created_at", "status", "total_cents",
                                                   "customer_email", "paid_at", "items")])
        done += len(rows)
        if len(rows) < page_size:
            break
        after = (rows[-1]["created_at"], rows[-1]["id"])
        await progress.report(job_id, 100 * done / max(total, 1) * 0.99, f"exported {done} of {total} orders")

    content = buffer.getvalue().encode("utf-8")
    result = {"export_id": export_id, "rows": done, "bytes": len(content),
              "download": f"/admin/exports/{export_id}/download"}
    async with db.transaction() as conn:
        await conn.execute(QUERIES["finish_export"], {"id": export_id, "content": content, "row_count": done})
        await progress.set_result(conn, job_id, result, f"exported {done} orders")
    return result


async def fail_export(export_id: str, error: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(QUERIES["fail_export"], {"id": export_id, "error": error[:500]})
