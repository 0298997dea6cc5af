"""CSV exports of orders in a date range, run as jobs that report progress.

An export row and its job commit together. The job reads the orders through a server-side cursor
(a few hundred rows per fetch) and writes the CSV as chunks of CHUNK_BYTES into `export_chunks`,
all in one transaction, so the worker's memory stays flat whatever the number of orders
(docs/benchmarks.md#exports) and a failed run leaves no partial file. The admin API streams the
chunks back one at a time. The one transaction is also one snapshot (the CSV matches its row
count); it lives as long as the export runs, which KIOSK_EXPORT_MAX_BYTES bounds.

Limits: an export past KIOSK_EXPORT_MAX_BYTES fails saying so (no retry: it would fail again);
at most KIOSK_EXPORT_KEEP exports are kept, a new one replacing the oldest finished ones, or
refused (409) while every kept one is still running. Retention (kiosk/retention.py) deletes
finished exports after KIOSK_RETAIN_EXPORTS_DAYS.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from kiosk import audit, db, progress, queue
from kiosk.audit import Operator
from kiosk.errors import Conflict, Invalid, NotFound
from kiosk.queues import names
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.exports")
TASK = "exports.orders_csv"
QUEUE = names.EXPORTS
MAX_RANGE = dt.timedelta(days=366)
COLUMNS = ("order_id", "created_at", "status", "total_cents", "customer_email", "paid_at", "items")
CHUNK_BYTES = 256 * 1024  # CSV bytes per stored chunk: the most the worker buffers
FETCH_ROWS = 500  # orders per fetch of the server-side cursor
MAX_PAGE = 100


class ExportNotFound(NotFound):
    def __init__(self, export_id: uuid.UUID | str) -> None:
        super().__init__(f"export {export_id} not found")
        self.export_id = export_id


class ExportNotReady(Conflict):
    """The export has not finished (HTTP 409)."""


class InvalidRange(Invalid):
    """A bad `from`/`to` (HTTP 422)."""


class InvalidCursor(Invalid):
    """A `cursor` that no page of exports returned (HTTP 422)."""


class ExportLimit(Conflict):
    """KIOSK_EXPORT_KEEP exports are kept and every one is still running (HTTP 409)."""


class ExportTooLarge(Exception):
    """The CSV would pass KIOSK_EXPORT_MAX_BYTES: the export fails, saying so."""


@dataclass(frozen=True)
class Download:
    """A finished export's file: its name and size; `chunks(export_id)` streams the bytes."""

    export_id: uuid.UUID
    filename: str
    size_bytes: int


@dataclass(frozen=True)
class ExportPage:
    exports: list[dict[str, Any]]
    next_cursor: str | None


def check_range(created_from: dt.datetime, created_to: dt.datetime) -> None:
    if created_from.tzinfo is None or created_to.tzinfo is None:
        raise InvalidRange("from and to need a time zone, e.g. 2026-11-01T00:00:00Z")
    if created_to <= created_from:
        raise InvalidRange("to must be after from")
    if created_to - created_from > MAX_RANGE:
        raise InvalidRange("the range may span at most 366 days")


async def request_export(
    conn: psycopg.AsyncConnection,
    created_from: dt.datetime,
    created_to: dt.datetime,
    requested_by: str,
) -> dict[str, Any]:
    """Create the export and defer its job in the caller's transaction.

    Makes room under KIOSK_EXPORT_KEEP first (the oldest finished exports go, in this
    transaction: `replaced` lists them); raises ExportLimit, nothing changed, when every kept
    export is still running.
    """
    check_range(created_from, created_to)
    keep = get_settings().export_keep
    await conn.execute(QUERIES["lock_exports"])
    replaced = [r["id"] for r in await db.fetch_all(conn, QUERIES["make_room"], {"keep": keep})]
    kept = await db.fetch_value(conn, int, QUERIES["count_exports"])
    if kept >= keep:
        raise ExportLimit(
            f"{kept} exports are still running and KIOSK_EXPORT_KEEP is {keep}: "
            "wait for one to finish"
        )
    export_id = uuid.uuid4()
    row = await db.fetch_row(
        conn,
        QUERIES["insert_export"],
        {
            "id": export_id,
            "created_from": created_from,
            "created_to": created_to,
            "requested_by": requested_by,
        },
    )
    job_id = await queue.defer(conn, TASK, queue=QUEUE, export_id=str(export_id))
    await conn.execute(QUERIES["set_job"], {"id": export_id, "job_id": job_id})
    row["job_id"] = job_id
    row["replaced"] = replaced
    return row


async def request_by(
    conn: psycopg.AsyncConnection, created_from: dt.datetime, created_to: dt.datetime, by: Operator
) -> dict[str, Any]:
    """`request_export` on an operator's behalf, recorded in the audit log in the same transaction;
    raises InvalidRange or ExportLimit (nothing recorded)."""
    export = await request_export(conn, created_from, created_to, requested_by=by.name)
    details = {
        "from": created_from.isoformat(),
        "to": created_to.isoformat(),
        "job_id": export["job_id"],
    }
    if export["replaced"]:  # the oldest finished exports, deleted to stay under KIOSK_EXPORT_KEEP
        details["replaced"] = [str(export_id) for export_id in export["replaced"]]
    await audit.record_by(conn, by, "export.create", f"export:{export['id']}", details)
    return export


async def get_export(conn: psycopg.AsyncConnection, export_id: uuid.UUID) -> dict[str, Any]:
    row = await db.fetch_one(conn, QUERIES["get_export"], {"id": export_id})
    if row is None:
        raise ExportNotFound(export_id)
    return row


async def list_exports(
    conn: psycopg.AsyncConnection, *, cursor: str | None = None, limit: int = 50
) -> ExportPage:
    """Newest first; `cursor` is the `next_cursor` of the previous page (InvalidCursor if not)."""
    limit = max(1, min(limit, MAX_PAGE))
    before_created_at, before_id = _parse_cursor(cursor) if cursor else (None, None)
    rows = await db.fetch_all(
        conn,
        QUERIES["list_exports"],
        {"before_created_at": before_created_at, "before_id": before_id, "limit": limit},
    )
    last = rows[-1] if len(rows) == limit else None
    return ExportPage(rows, _make_cursor(last["created_at"], last["id"]) if last else None)


def _make_cursor(created_at: dt.datetime, export_id: uuid.UUID) -> str:
    # Opaque and URL-safe: a time with "+00:00" in a query string would arrive as a space.
    return (
        base64.urlsafe_b64encode(f"{created_at.isoformat()}|{export_id}".encode())
        .decode()
        .rstrip("=")
    )


def _parse_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, export_id = text.split("|")
        at = dt.datetime.fromisoformat(created_at)
        if at.tzinfo is None:
            raise ValueError("no time zone")
        return at, uuid.UUID(export_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("cursor: not a next_cursor of this list") from None


async def download(conn: psycopg.AsyncConnection, export_id: uuid.UUID) -> Download:
    row = await db.fetch_one(conn, QUERIES["get_download"], {"id": export_id})
    if row is None:
        raise ExportNotFound(export_id)
    if row["status"] != "done":
        raise ExportNotReady(f"export {export_id} is {row['status']}; download it when done")
    span = f"{row['created_from']:%Y%m%d}-{row['created_to']:%Y%m%d}"
    return Download(export_id, f"orders-{span}-{str(export_id)[:8]}.csv", row["size_bytes"])


async def chunks(export_id: uuid.UUID) -> AsyncIterator[bytes]:
    """The CSV's chunks in order, each read in its own short transaction.

    An export deleted meanwhile (replaced, pruned) ends the stream early; the response's
    Content-Length then tells the client its file is incomplete.
    """
    seq = 0
    while True:
        async with db.transaction() as conn:
            row = await db.fetch_one(conn, QUERIES["get_chunk"], {"id": export_id, "seq": seq})
        if row is None:
            return
        yield bytes(row["data"])
        seq += 1


def _cell(value: Any) -> Any:
    # A text cell starting with = + - @ would run as a formula in a spreadsheet: neutralise it.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return "" if value is None else value


class _ChunkWriter:
    """CSV rows into chunks of `chunk_bytes`, inserted on the run's connection as they fill."""

    def __init__(
        self, conn: psycopg.AsyncConnection, export_id: str, chunk_bytes: int, max_bytes: int
    ):
        self.conn, self.export_id = conn, export_id
        self.chunk_bytes, self.max_bytes = chunk_bytes, max_bytes
        self.buffer = io.StringIO()
        self.csv = csv.writer(self.buffer)
        self.seq = self.size = 0

    async def row(self, values: list[Any]) -> None:
        self.csv.writerow(values)
        if self.buffer.tell() >= self.chunk_bytes:
            await self.flush()

    async def flush(self) -> None:
        data = self.buffer.getvalue().encode("utf-8")
        self.buffer.seek(0)
        self.buffer.truncate()
        if self.size + len(data) > self.max_bytes:
            raise ExportTooLarge(
                f"the CSV passes KIOSK_EXPORT_MAX_BYTES ({self.max_bytes} bytes): "
                "export a shorter range"
            )
        await self.conn.execute(
            QUERIES["insert_chunk"], {"id": self.export_id, "seq": self.seq, "data": data}
        )
        self.seq += 1
        self.size += len(data)


async def run_export(
    export_id: str,
    job_id: int,
    *,
    fetch_rows: int = FETCH_ROWS,
    chunk_bytes: int = CHUNK_BYTES,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """The job: stream the orders into CSV chunks, reporting progress; idempotent when re-run.

    Chunks and the `done` status commit together; any failure rolls back every chunk of the run.
    Too large an export is recorded as failed and returned (not raised): a retry would fail again.
    """
    max_bytes = max_bytes or get_settings().export_max_bytes
    async with db.transaction() as conn:
        claim = await db.fetch_one(conn, QUERIES["start_export"], {"id": export_id})
        if claim is None:
            row = await get_export(conn, uuid.UUID(export_id))  # done already, or unknown
            return {"export_id": export_id, "rows": row["row_count"], "already_done": True}
        total = await db.fetch_value(conn, int, QUERIES["count_orders"], claim)
    await progress.report(job_id, 0, f"exporting {total} orders")

    done = 0
    try:
        async with db.transaction() as conn:
            await conn.execute(QUERIES["clear_chunks"], {"id": export_id})
            writer = _ChunkWriter(conn, export_id, chunk_bytes, max_bytes)
            await writer.row(list(COLUMNS))
            async with conn.cursor(
                name=f"export_{uuid.UUID(export_id).hex}", row_factory=dict_row
            ) as cur:
                await cur.execute(QUERIES["orders_in_range"], claim)
                while rows := await cur.fetchmany(fetch_rows):
                    for row in rows:
                        await writer.row(
                            [
                                _cell(row[c])
                                for c in (
                                    "id",
                                    "created_at",
                                    "status",
                                    "total_cents",
                                    "customer_email",
                                    "paid_at",
                                    "items",
                                )
                            ]
                        )
                    done += len(rows)
                    if len(rows) == fetch_rows:
                        await progress.report(
                            job_id,
                            100 * done / max(total, 1) * 0.99,
                            f"exported {done} of {total} orders",
                        )
            await writer.flush()
            result = {
                "export_id": export_id,
                "rows": done,
                "bytes": writer.size,
                "download": f"/admin/exports/{export_id}/download",
            }
            await conn.execute(
                QUERIES["finish_export"],
                {"id": export_id, "row_count": done, "size_bytes": writer.size},
            )
            await progress.set_result(conn, job_id, result, f"exported {done} orders")
    except ExportTooLarge as exc:
        message = f"{exc} (stopped after {done} of {total} orders)"
        await fail_export(export_id, message)
        await progress.report(job_id, 0, f"failed: {message}")  # never moves back
        return {"export_id": export_id, "rows": done, "error": message}
    return result


async def fail_export(export_id: str, error: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(QUERIES["fail_export"], {"id": export_id, "error": error[:500]})
