"""Admin API for order exports: request one, watch its progress, download the CSV."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kiosk import db, exports
from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired

router = APIRouter(
    prefix="/admin/exports", tags=["admin"], dependencies=[AdminRequired], responses=UNAUTHORIZED
)


class ExportRequest(BaseModel):
    from_: dt.datetime = Field(
        alias="from", description="orders created at or after (with a time zone)"
    )
    to: dt.datetime = Field(description="orders created before (with a time zone)")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        422: {"description": "bad range"},
        409: {"description": "KIOSK_EXPORT_KEEP exports are kept and all still running"},
    },
    summary="Export the orders created in [from, to) as CSV, in a job that reports progress",
)
async def create_export(body: ExportRequest, by: Actor) -> dict[str, Any]:
    """Beyond KIOSK_EXPORT_KEEP exports, the oldest finished ones are deleted (`replaced`)."""
    async with db.transaction() as conn:  # InvalidRange 422, ExportLimit 409 (kiosk.app)
        return await exports.request_by(conn, body.from_, body.to, by)


@router.get(
    "",
    summary="Exports, newest first, with their progress, keyset-paginated",
    responses={422: {"description": "bad limit or cursor"}},
)
async def list_exports(
    limit: Annotated[int, Query(ge=1, le=exports.MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
) -> dict[str, Any]:
    async with db.transaction() as conn:  # a bad cursor: exports.InvalidCursor, 422 (kiosk.app)
        page = await exports.list_exports(conn, cursor=cursor, limit=limit)
    return {"exports": page.exports, "next_cursor": page.next_cursor}


@router.get("/{export_id}", responses={404: {}}, summary="One export: status, progress, row count")
async def get_export(export_id: uuid.UUID) -> dict[str, Any]:
    async with db.transaction() as conn:  # ExportNotFound: 404 (kiosk.app)
        return await exports.get_export(conn, export_id)


@router.get(
    "/{export_id}/download",
    responses={404: {}, 409: {"description": "not finished"}, 200: {"content": {"text/csv": {}}}},
    summary="The CSV of a finished export",
)
async def download_export(export_id: uuid.UUID) -> Response:
    async with db.transaction() as conn:  # ExportNotFound 404, ExportNotReady 409 (kiosk.app)
        file = await exports.download(conn, export_id)
    return csv_response(file)


def csv_response(file: exports.Download) -> Response:
    """The CSV as an attachment, streamed chunk by chunk (the dashboard's download link too)."""
    return StreamingResponse(
        exports.chunks(file.export_id),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{file.filename}"',
            "Content-Length": str(file.size_bytes),
        },
    )
