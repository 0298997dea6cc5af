"""Are workers alive? Read from the database, so the API and a container health check agree.

procrastinate records each worker in `procrastinate_workers` (id, last_heartbeat) and updates the
heartbeat every 10 seconds; a row says nothing about which machine runs the worker. To tell
whether the worker of *this* container is alive, every kiosk connection carries its process in
PostgreSQL's `application_name` (`kiosk-worker:<host>:<pid>`, see `kiosk.db.application_name`),
pool and LISTEN connection alike. A host's worker is alive when one of its connections to this
database did something within the threshold: the heartbeat alone runs a query every 10 seconds
on the worker's pool, so a live event loop always passes, and a hung, blocked or disconnected one
does not. Both views read `pg_stat_activity` and need the same database role as the workers
(PostgreSQL hides the activity columns of other roles' sessions).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from kiosk import db
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.heartbeat")


@dataclass(frozen=True)
class Fleet:
    """Registered workers, split by the age of their last heartbeat."""

    fresh: int
    stale: int
    stale_after_seconds: int

    @property
    def alive(self) -> bool:
        return self.fresh > 0


@dataclass(frozen=True)
class HostWorkers:
    """The worker processes of one host that hold connections to this database."""

    host: str
    processes: int
    connections: int
    idle_seconds: float | None


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    message: str


async def fleet(conn: psycopg.AsyncConnection, stale_seconds: int) -> Fleet:
    row = await db.fetch_row(conn, QUERIES["fleet_heartbeats"], {"stale_seconds": stale_seconds})
    return Fleet(row["fresh"], row["stale"], stale_seconds)


async def host_workers(conn: psycopg.AsyncConnection, host: str) -> HostWorkers:
    prefix = db.host_prefix("worker", host)
    row = await db.fetch_row(conn, QUERIES["host_connections"], {"prefix": prefix})
    return HostWorkers(host, row["processes"], row["connections"], row["idle_seconds"])


async def check_host(conn: psycopg.AsyncConnection, host: str, stale_seconds: int) -> Verdict:
    """Healthy when a worker process of `host` is connected and active, and the fleet beats."""
    workers = await host_workers(conn, host)
    if workers.processes == 0:
        return Verdict(False, f"no worker process of host {host} is connected to the database")
    idle = workers.idle_seconds or 0.0
    if idle > stale_seconds:
        return Verdict(
            False,
            f"the worker connections of host {host} have been idle for {idle:.0f}s "
            f"(limit {stale_seconds}s): the worker is stuck",
        )
    beats = await fleet(conn, stale_seconds)
    if not beats.alive:
        return Verdict(False, f"no worker heartbeat in the last {stale_seconds}s")
    return Verdict(
        True,
        f"{workers.processes} worker process(es) of host {host} active {idle:.0f}s ago; "
        f"{beats.fresh} worker(s) with a fresh heartbeat",
    )
