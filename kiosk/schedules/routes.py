"""Admin API of schedules: `/admin/schedules...`, bearer token required.

Thin: parse, call `kiosk.schedules.service`, shape the answer. Its errors (`InvalidSchedule`,
`ScheduleNotFound`, `ScheduleConflict`) are domain errors the app answers (kiosk/http_errors.py).
Secrets are never in an answer:
secret header values and the body are masked, and so are the URL's query values
(docs/schedules.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict

from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired, Responses
from kiosk.schedules import service, store
from kiosk.schedules import spec as spec_module
from kiosk.schedules.spec import InvalidSchedule, ScheduleSpec

router = APIRouter(
    prefix="/admin/schedules",
    tags=["schedules"],
    dependencies=[AdminRequired],
    responses=UNAUTHORIZED,
)
NOT_FOUND: Responses = {404: {"description": "no such schedule"}}
INVALID: Responses = {422: {"description": "refused, with the reason; nothing stored"}}
TAKEN: Responses = {409: {"description": "another schedule has that name"}}


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    cron: str
    url: str
    timezone: str = "UTC"
    method: str = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 3
    active: bool = True
    # Headers whose values are not secret (shown in answers, stored in clear) beyond the built-in
    # Accept, Accept-Encoding, Accept-Language, Cache-Control, Content-Type and User-Agent.
    plain_headers: list[str] = []


class SchedulePatch(BaseModel):
    """Only the fields sent change. `headers` replaces all headers; a masked value keeps its secret.

    A masked body keeps the stored body; the URL as shown (query values masked) keeps the stored
    URL. Moving the URL to another origin requires every secret again."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    cron: str | None = None
    url: str | None = None
    timezone: str | None = None
    method: str | None = None
    headers: dict[str, str] | None = None
    body: str | None = None
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    active: bool | None = None
    plain_headers: list[str] | None = None


NULLABLE = {"body"}


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_json(run: store.Run) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    for key in ("scheduled_for", "started_at", "finished_at", "created_at"):
        data[key] = _time(data[key])
    return data


def schedule_json(view: service.ScheduleView) -> dict[str, Any]:
    s = view.schedule
    return {
        "id": s.id,
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "method": s.method,
        "url": s.url,
        "headers": s.shown_headers,
        "plain_headers": list(s.plain_headers),
        "body": spec_module.MASK if s.body_bytes is not None else None,
        "body_bytes": s.body_bytes,
        "timeout_seconds": s.timeout_seconds,
        "max_attempts": s.max_attempts,
        "active": s.active,
        "created_at": _time(s.created_at),
        "updated_at": _time(s.updated_at),
        "dispatched_until": _time(s.dispatched_until),
        "next_runs": [_time(t) for t in view.next_runs],
        "last_run": run_json(view.last_run) if view.last_run else None,
    }


@router.get(
    "",
    summary="Schedules, oldest first, with their next run times and last run; keyset-paginated",
    responses={422: {"description": "bad limit or cursor"}},
)
async def list_schedules(
    limit: int = Query(50, description=f"schedules per page, 1 to {service.MAX_PAGE}"),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> dict[str, Any]:
    page = await service.list_page(limit=limit, cursor=cursor)
    return {"schedules": [schedule_json(v) for v in page.views], "next_cursor": page.next_cursor}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a schedule",
    responses={**INVALID, **TAKEN},
)
async def create_schedule(body: ScheduleIn, by: Actor) -> dict[str, Any]:
    return schedule_json(await service.create(ScheduleSpec(**body.model_dump()), by=by))


@router.get(
    "/{schedule_id}", summary="One schedule; secret header values masked", responses=NOT_FOUND
)
async def get_schedule(schedule_id: int) -> dict[str, Any]:
    return schedule_json(await service.get(schedule_id))


@router.patch(
    "/{schedule_id}", summary="Change the fields sent", responses={**NOT_FOUND, **INVALID, **TAKEN}
)
async def patch_schedule(schedule_id: int, body: SchedulePatch, by: Actor) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None and k not in NULLABLE)
    if nulls:
        raise InvalidSchedule(f"may not be null: {', '.join(nulls)}")
    return schedule_json(await service.update(schedule_id, changes, by=by))


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a schedule with its history",
    responses=NOT_FOUND,
)
async def delete_schedule(schedule_id: int, by: Actor) -> Response:
    await service.delete(schedule_id, by=by)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{schedule_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a schedule now: a manual run, due at once",
    responses=NOT_FOUND,
)
async def run_schedule_now(schedule_id: int, by: Actor) -> dict[str, Any]:
    run, upcoming = await service.run_now(schedule_id, by=by)
    return {"run": run_json(run), "next_runs": [_time(t) for t in upcoming]}


@router.get(
    "/{schedule_id}/runs",
    summary="Run history, newest tick first, keyset-paginated",
    responses={**NOT_FOUND, 422: {"description": "bad limit or cursor"}},
)
async def list_runs(
    schedule_id: int,
    limit: int = Query(50, description=f"runs per page, 1 to {service.MAX_PAGE}"),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> dict[str, Any]:
    page = await service.history(schedule_id, limit=limit, cursor=cursor)
    return {
        "runs": [run_json(r) for r in page.runs],
        "next_cursor": page.next_cursor,
        "next_runs": [_time(t) for t in page.next_runs],
    }
