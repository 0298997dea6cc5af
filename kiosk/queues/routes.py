"""Admin JSON API of queue controls: list queues, pause, resume, set limits (admin token)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from kiosk import db
from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired
from kiosk.queues import service

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[AdminRequired], responses=UNAUTHORIZED
)
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "not a queue name, or a reason or limit out of range"}
}


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        None, description=f"why, shown to other operators (at most {service.MAX_REASON} characters)"
    )


class LimitsBody(BaseModel):
    """Both limits, replacing the current ones; null for no limit."""

    model_config = ConfigDict(extra="forbid")

    max_per_second: StrictInt | StrictFloat | None = Field(
        description="jobs started per second across all workers (above 0, at most 10000), or null"
    )
    max_running: StrictInt | None = Field(
        description="jobs running at once across all workers (1 to 10000), or null"
    )


@router.get(
    "/queues",
    summary="Queues: pause state and limits, counts by status, oldest runnable age, throughput",
)
async def get_queues() -> list[dict[str, Any]]:
    async with db.transaction() as conn:
        return [asdict(queue) for queue in await service.list_queues(conn)]


@router.post(
    "/queues/{queue}/pause",
    summary="Pause a queue: no new job of it starts on any worker; running jobs finish",
    responses=INVALID,
)
async def pause_queue(
    queue: str, by: Actor, body: Annotated[PauseBody | None, Body()] = None
) -> dict[str, Any]:
    async with db.transaction() as conn:
        control = await service.pause(conn, queue, body.reason if body else None, by)
    return service.as_json(control)


@router.post(
    "/queues/{queue}/resume",
    summary="Resume a paused queue: its waiting jobs start again",
    responses=INVALID,
)
async def resume_queue(queue: str, by: Actor) -> dict[str, Any]:
    async with db.transaction() as conn:
        control = await service.resume(conn, queue, by)
    return service.as_json(control)


@router.put(
    "/queues/{queue}/limits",
    summary="Set a queue's rate limit and concurrency cap (null: none)",
    responses=INVALID,
)
async def set_queue_limits(queue: str, body: LimitsBody, by: Actor) -> dict[str, Any]:
    async with db.transaction() as conn:
        control = await service.set_limits(conn, queue, body.max_per_second, body.max_running, by)
    return service.as_json(control)
