"""Admin JSON API over the job queue: jobs, workers, periodic tasks, audit log (queues:
kiosk/queues/routes.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from kiosk import audit, db
from kiosk.admin import actions, jobs, periodic
from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired
from kiosk.errors import Conflict, Invalid, Unavailable
from kiosk.settings import get_settings

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[AdminRequired], responses=UNAUTHORIZED
)

Status = Literal["todo", "doing", "succeeded", "failed", "cancelled", "aborted"]


class JobFilterBody(BaseModel):
    """Which jobs a bulk action applies to; at least one field is required."""

    status: Status | None = None
    queue: str | None = Field(None, max_length=128)
    task: str | None = Field(None, max_length=128)
    text: str | None = Field(None, max_length=200, description="substring of the JSON arguments")
    deferred_after: dt.datetime | None = None
    deferred_before: dt.datetime | None = None
    min_attempts: int | None = Field(None, ge=0, description="1: jobs that ran at least once")


class BulkResponse(BaseModel):
    matched: int
    changed: list[int]
    skipped: list[int]


class ActionResponse(BaseModel):
    id: int
    result: str


# GET /admin/queues (counts with pause state and limits) is kiosk/queues/routes.py.


@router.get("/jobs", summary="Jobs, newest first, filtered, keyset-paginated")
async def get_jobs(
    status: Status | None = None,
    queue: Annotated[str | None, Query(max_length=128)] = None,
    task: Annotated[str | None, Query(max_length=128)] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="substring of the JSON arguments")
    ] = None,
    deferred_after: dt.datetime | None = None,
    deferred_before: dt.datetime | None = None,
    min_attempts: Annotated[
        int | None, Query(ge=0, description="1: jobs that ran at least once")
    ] = None,
    cursor: Annotated[
        int | None, Query(ge=1, description="`next_cursor` of the previous page")
    ] = None,
    before: Annotated[int | None, Query(ge=1, description="the former name of `cursor`")] = None,
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """A text search (`q`) that matches few jobs reads the whole table: past
    KIOSK_ADMIN_SEARCH_TIMEOUT_SECONDS it is stopped and answered 503, as the dashboard does."""
    flt = jobs.JobFilter(status, queue, task, q, deferred_after, deferred_before, min_attempts)
    timeout = get_settings().admin_search_timeout_seconds
    try:
        async with db.transaction() as conn:
            await jobs.bound_statements(conn, timeout)
            page = await jobs.list_jobs(conn, flt, before=cursor or before, limit=limit)
    except psycopg.errors.QueryCanceled:
        raise Unavailable(
            f"the search took longer than {timeout:g} s and was stopped: narrow it "
            "with a status, task or time range (text alone reads every job)",
        ) from None
    return {"jobs": page.jobs, "next_cursor": page.next_cursor}


@router.get(
    "/jobs/{job_id}",
    responses={404: {}},
    summary="One job: arguments, state, locks, event timeline, outcome of every attempt, progress",
)
async def get_job(job_id: int) -> dict[str, Any]:
    async with db.transaction() as conn:  # JobNotFound: 404 (kiosk.app)
        return await jobs.get_job(conn, job_id)


async def _act(by: audit.Operator, job_id: int, action: str) -> ActionResponse:
    async with db.transaction() as conn:  # JobNotFound 404, JobStateConflict 409 (kiosk.app)
        operation = actions.retry_job if action == "retry" else actions.cancel_job
        result = await operation(conn, job_id, by)
    return ActionResponse(id=job_id, result=result)


@router.post(
    "/jobs/{job_id}/retry",
    summary="Run a failed, cancelled or aborted job again",
    responses={404: {}, 409: {"description": "the job's state does not allow it"}},
)
async def retry_job(job_id: int, by: Actor) -> ActionResponse:
    return await _act(by, job_id, "retry")


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a waiting job, or ask a running one to abort",
    responses={404: {}, 409: {"description": "the job's state does not allow it"}},
)
async def cancel_job(job_id: int, by: Actor) -> ActionResponse:
    return await _act(by, job_id, "cancel")


async def _bulk(by: audit.Operator, body: JobFilterBody, action: str) -> BulkResponse:
    flt = jobs.JobFilter(**body.model_dump())
    if flt.is_empty():
        raise Invalid("give at least one filter (status, queue, task, text or a time range)")
    async with db.transaction() as conn:
        result = await actions.bulk(conn, action, flt, by)
    return BulkResponse(**asdict(result))


@router.post(
    "/jobs/retry",
    summary=f"Retry every matching job (at most {jobs.MAX_BULK} per call)",
    responses={422: {"description": "no filter given"}},
)
async def bulk_retry(body: JobFilterBody, by: Actor) -> BulkResponse:
    return await _bulk(by, body, "retry")


@router.post(
    "/jobs/cancel",
    summary=f"Cancel every matching job (at most {jobs.MAX_BULK} per call)",
    responses={422: {"description": "no filter given"}},
)
async def bulk_cancel(body: JobFilterBody, by: Actor) -> BulkResponse:
    return await _bulk(by, body, "cancel")


@router.get(
    "/workers",
    summary="Workers: heartbeat age, stalled or live, running jobs; keyset-paginated by id",
)
async def get_workers(
    cursor: Annotated[
        int | None, Query(ge=0, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_PAGE)] = 100,
) -> dict[str, Any]:
    async with db.transaction() as conn:
        workers = await jobs.list_workers(
            conn, stale_after=get_settings().worker_stale_seconds, after=cursor, limit=limit
        )
    return {"workers": workers, "next_cursor": workers[-1]["id"] if len(workers) == limit else None}


@router.get(
    "/periodic",
    summary="Periodic tasks: schedule, last and next ticks (all: the tasks of periodic.py)",
)
async def get_periodic() -> list[dict[str, Any]]:
    async with db.transaction() as conn:
        return [asdict(p) for p in await periodic.list_periodic(conn)]


@router.post(
    "/periodic/{name}/run",
    summary="Defer a periodic task now, outside its schedule",
    responses={404: {}, 409: {"description": "one is already waiting (queueing lock)"}},
)
async def run_periodic(name: str, by: Actor) -> dict[str, Any]:
    async with db.transaction() as conn:  # PeriodicNotFound: 404 (kiosk.app)
        job_id = await actions.run_periodic(conn, name, by)
        if job_id is None:
            raise Conflict(f"a {name} job is already waiting (queueing lock)")
    return {"name": name, "job_id": job_id}


@router.get("/audit", summary="Audit log of admin actions, newest first, keyset-paginated")
async def get_audit(
    cursor: Annotated[
        int | None, Query(ge=1, description="`next_cursor` of the previous page")
    ] = None,
    before: Annotated[int | None, Query(ge=1, description="the former name of `cursor`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with db.transaction() as conn:
        entries = await audit.list_entries(conn, before=cursor or before, limit=limit)
    return {"entries": entries, "next_cursor": entries[-1]["id"] if len(entries) == limit else None}
