"""`kiosk worker-health`: a container health check for a worker, one line of output.

Exit 0 when the database answers and a worker process of this host (container) is connected,
active and the fleet has a fresh heartbeat; 1 otherwise. It opens one short connection of its
own (named `kiosk-health:...`, so it never counts as a worker) and no pool.
"""

from __future__ import annotations

import asyncio
import socket

import psycopg

from kiosk import db, heartbeat
from kiosk.settings import load_or_exit

CONNECT_TIMEOUT = 5


async def _check(database_url: str, host: str, stale_seconds: int) -> heartbeat.Verdict:
    try:
        conn = await psycopg.AsyncConnection.connect(
            database_url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=db.application_name("health"),
        )
    except psycopg.Error as exc:
        return heartbeat.Verdict(False, f"database unavailable: {type(exc).__name__}")
    async with conn:
        return await heartbeat.check_host(conn, host, stale_seconds)


def run(host: str | None = None) -> int:
    settings = load_or_exit()
    host = host or socket.gethostname()
    try:
        verdict = asyncio.run(_check(settings.database_url, host, settings.worker_stale_seconds))
    except psycopg.Error as exc:
        verdict = heartbeat.Verdict(False, f"database error: {type(exc).__name__}")
    print(f"{'ok' if verdict.healthy else 'unhealthy'}: {verdict.message}", flush=True)
    return 0 if verdict.healthy else 1
