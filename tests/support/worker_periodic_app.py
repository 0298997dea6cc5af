"""`tests.support.worker_app` and a periodic task every second, for the one-job-per-tick test."""

from __future__ import annotations

import os

from kiosk import db
from tests.support.worker_app import app

__all__ = ["app"]


@app.periodic(cron="* * * * * *", periodic_id="every-second")
@app.task(name="tests.tick")
async def tick(timestamp: int) -> int:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO test_ticks (tick, pid) VALUES (%s, %s)", (timestamp, os.getpid())
        )
    return timestamp
