"""Progress and results of long jobs: what a task reports while it runs, for operators to watch.

A task that wants it is declared with `pass_context=True` and calls
`await progress.report(context.job.id, 40, "exported 400 of 1000 orders")`; each report is its own
short transaction so it is visible at once, whatever the task does next. The row goes away with
its job (ON DELETE CASCADE), so pruning jobs prunes progress too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kiosk import db
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.progress")


@dataclass(frozen=True)
class Progress:
    job_id: int
    percent: int
    message: str
    result: Any
    updated_at: dt.datetime


async def report(job_id: int, percent: float, message: str = "") -> None:
    value = max(0, min(100, int(percent)))
    async with db.transaction() as conn:
        await conn.execute(
            QUERIES["report_progress"],
            {"job_id": job_id, "percent": value, "message": message[:500]},
        )


async def set_result(
    conn: psycopg.AsyncConnection, job_id: int, result: Any, message: str = "done"
) -> None:
    """In the caller's transaction, so the result commits with whatever produced it."""
    await conn.execute(
        QUERIES["set_result"], {"job_id": job_id, "result": Jsonb(result), "message": message[:500]}
    )


async def get(conn: psycopg.AsyncConnection, job_id: int) -> Progress | None:
    return await db.fetch_one_as(conn, Progress, QUERIES["get_progress"], {"job_id": job_id})
