"""Rows of `schedules` and `schedule_runs` as typed values, and the SQL that reads and writes them.

Every function takes the caller's connection, so the caller decides the transaction.

Secrets never reach a column in clear (docs/schedules.md, "Secrets"): a row keeps its plain
headers in `headers`, only the names of its secret headers in `secret_headers`, the URL with its
query values masked in `url`, the size of its body in `body_bytes`, and everything secret (secret
header values, the body, the real URL when it differs from the shown one) sealed in `secrets`
with KIOSK_SECRET_KEY (kiosk/secretbox.py). `unseal` gives the real request back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kiosk import db
from kiosk.schedules import spec as spec_module
from kiosk.schedules.spec import MASK, ScheduleSpec
from kiosk.secretbox import Keyring
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.schedules")


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    cron: str
    timezone: str
    method: str
    url: str  # as shown: query values masked
    headers: dict[str, str]  # the plain ones
    timeout_seconds: float
    max_attempts: int
    active: bool
    dispatched_until: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    secret_headers: list[str]
    body_bytes: int | None
    secrets: str | None = field(repr=False)

    @property
    def shown_headers(self) -> dict[str, str]:
        """Every header, secret values masked."""
        return dict(self.headers) | dict.fromkeys(self.secret_headers, MASK)

    @property
    def plain_headers(self) -> tuple[str, ...]:
        """Names the operator marked plain (the plain headers beyond the built-in list)."""
        return tuple(
            sorted(
                name.lower()
                for name in self.headers
                if name.lower() not in spec_module.PLAIN_HEADERS
            )
        )

    @property
    def masked_spec(self) -> ScheduleSpec:
        """The schedule as shown, secrets masked: for audit entries and views, no key needed."""
        return ScheduleSpec(
            name=self.name,
            cron=self.cron,
            timezone=self.timezone,
            method=self.method,
            url=self.url,
            headers=self.shown_headers,
            body=MASK if self.body_bytes is not None else None,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            active=self.active,
            plain_headers=self.plain_headers,
        )

    def unseal(self, keys: Keyring) -> ScheduleSpec:
        """The real schedule, secrets decrypted (SecretKeyMissing, SecretUnreadable)."""
        url, headers, body = unseal(keys, self.url, self.headers, self.secrets)
        return ScheduleSpec(
            name=self.name,
            cron=self.cron,
            timezone=self.timezone,
            method=self.method,
            url=url,
            headers=headers,
            body=body,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            active=self.active,
            plain_headers=self.plain_headers,
        )


def unseal(
    keys: Keyring, url: str, headers: dict[str, str], secrets: str | None
) -> tuple[str, dict[str, str], str | None]:
    """The real URL, all headers and the body of a stored request."""
    if secrets is None:
        return url, dict(headers), None
    opened = keys.open(secrets, "the secrets of schedules")
    return opened.get("url") or url, dict(headers) | opened["headers"], opened.get("body")


def seal(keys: Keyring, spec: ScheduleSpec) -> dict[str, Any]:
    """The columns that store a spec's request, its secrets encrypted (SecretKeyMissing)."""
    plain, secret = spec_module.split_headers(spec)
    shown_url = spec_module.mask_url(spec.url)
    sealed = None
    if secret or spec.body is not None or shown_url != spec.url:
        sealed = keys.seal(
            {
                "headers": secret,
                "body": spec.body,
                "url": spec.url if shown_url != spec.url else None,
            },
            "secret header values, bodies or query strings of schedules",
        )
    return {
        "url": shown_url,
        "headers": Jsonb(plain),
        "secret_headers": list(secret),
        "body_bytes": len(spec.body.encode()) if spec.body is not None else None,
        "secrets": sealed,
    }


@dataclass(frozen=True)
class Run:
    id: int
    schedule_id: int
    trigger: str
    scheduled_for: dt.datetime
    job_id: int | None
    outcome: str
    attempts: int
    attempt_log: list[dict[str, Any]]
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    http_status: int | None
    duration_ms: int | None
    response_excerpt: str | None
    error: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class ClaimedRun:
    """A run whose attempt has just started, with the request to perform."""

    run_id: int
    schedule_id: int
    trigger: str
    scheduled_for: dt.datetime
    attempts: int
    method: str
    url: str  # as shown: query values masked
    headers: dict[str, str]  # the plain ones
    secrets: str | None = field(repr=False)
    timeout_seconds: float
    max_attempts: int

    def request(self, keys: Keyring) -> tuple[str, dict[str, str], str | None]:
        """The real URL, headers and body (SecretKeyMissing, SecretUnreadable)."""
        return unseal(keys, self.url, self.headers, self.secrets)


def _spec_params(keys: Keyring, spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "method": spec.method,
        "timeout_seconds": spec.timeout_seconds,
        "max_attempts": spec.max_attempts,
        "active": spec.active,
    } | seal(keys, spec)


async def insert_schedule(
    conn: psycopg.AsyncConnection, keys: Keyring, spec: ScheduleSpec
) -> Schedule:
    return (
        await db.fetch_all_as(conn, Schedule, QUERIES["insert_schedule"], _spec_params(keys, spec))
    )[0]


async def update_schedule(
    conn: psycopg.AsyncConnection,
    keys: Keyring,
    schedule_id: int,
    spec: ScheduleSpec,
    *,
    reset_cursor: bool,
) -> Schedule:
    params = _spec_params(keys, spec) | {"id": schedule_id, "reset_cursor": reset_cursor}
    return (await db.fetch_all_as(conn, Schedule, QUERIES["update_schedule"], params))[0]


async def get_schedule(
    conn: psycopg.AsyncConnection, schedule_id: int, *, lock: bool = False
) -> Schedule | None:
    return await db.fetch_one_as(
        conn, Schedule, QUERIES["lock_schedule" if lock else "get_schedule"], {"id": schedule_id}
    )


async def list_schedules(
    conn: psycopg.AsyncConnection, *, limit: int, after_id: int | None = None
) -> list[Schedule]:
    """Schedules by id, after `after_id` (keyset pagination)."""
    return await db.fetch_all_as(
        conn, Schedule, QUERIES["list_schedules"], {"limit": limit, "after_id": after_id}
    )


async def sealed_schedules(conn: psycopg.AsyncConnection) -> list[tuple[int, str]]:
    """(id, token) of every schedule holding secrets, for key rotation and start-up checks."""
    rows = await db.fetch_all(conn, QUERIES["sealed_schedules"])
    return [(row["id"], row["secrets"]) for row in rows]


async def reseal(conn: psycopg.AsyncConnection, schedule_id: int, old: str, new: str) -> bool:
    """Replace a token by the same secrets under the first key, unless the row changed meanwhile."""
    row = await db.fetch_one(conn, QUERIES["reseal"], {"id": schedule_id, "old": old, "new": new})
    return row is not None


async def last_runs(conn: psycopg.AsyncConnection, schedule_ids: list[int]) -> dict[int, Run]:
    runs = await db.fetch_all_as(conn, Run, QUERIES["last_runs"], {"ids": schedule_ids})
    return {run.schedule_id: run for run in runs}


async def delete_schedule(conn: psycopg.AsyncConnection, schedule_id: int) -> bool:
    return await db.fetch_one(conn, QUERIES["delete_schedule"], {"id": schedule_id}) is not None


async def waiting_job_ids(conn: psycopg.AsyncConnection, schedule_id: int) -> list[int]:
    rows = await db.fetch_all(conn, QUERIES["waiting_job_ids"], {"schedule_id": schedule_id})
    return [row["job_id"] for row in rows]


async def delete_pending_cron_runs(conn: psycopg.AsyncConnection, schedule_id: int) -> list[int]:
    rows = await db.fetch_all(
        conn, QUERIES["delete_pending_cron_runs"], {"schedule_id": schedule_id}
    )
    return [row["job_id"] for row in rows if row["job_id"] is not None]


async def schedules_to_dispatch(conn: psycopg.AsyncConnection, horizon_seconds: float) -> list[int]:
    rows = await db.fetch_all(
        conn, QUERIES["schedules_to_dispatch"], {"horizon_seconds": horizon_seconds}
    )
    return [row["id"] for row in rows]


async def insert_cron_runs(
    conn: psycopg.AsyncConnection, schedule_id: int, ticks: list[dt.datetime]
) -> list[tuple[int, dt.datetime]]:
    """The runs created, as (run id, tick); ticks that already had a run are not returned."""
    if not ticks:
        return []
    rows = await db.fetch_all(
        conn, QUERIES["insert_cron_runs"], {"schedule_id": schedule_id, "ticks": ticks}
    )
    return sorted((row["id"], row["scheduled_for"]) for row in rows)


async def insert_skipped_runs(
    conn: psycopg.AsyncConnection, schedule_id: int, ticks: list[dt.datetime], error: str
) -> None:
    if ticks:
        await conn.execute(
            QUERIES["insert_skipped_runs"],
            {"schedule_id": schedule_id, "ticks": ticks, "error": error},
        )


async def set_job_ids(
    conn: psycopg.AsyncConnection, pairs: Sequence[tuple[int, int | None]]
) -> None:
    if pairs:
        run_ids, job_ids = zip(*pairs, strict=True)
        await conn.execute(
            QUERIES["set_job_ids"], {"run_ids": list(run_ids), "job_ids": list(job_ids)}
        )


async def advance_cursor(
    conn: psycopg.AsyncConnection, schedule_id: int, until: dt.datetime
) -> None:
    await conn.execute(QUERIES["advance_cursor"], {"id": schedule_id, "until": until})


async def insert_manual_run(conn: psycopg.AsyncConnection, schedule_id: int) -> Run:
    return (
        await db.fetch_all_as(conn, Run, QUERIES["insert_manual_run"], {"schedule_id": schedule_id})
    )[0]


async def get_run(conn: psycopg.AsyncConnection, run_id: int) -> Run | None:
    return await db.fetch_one_as(conn, Run, QUERIES["get_run"], {"id": run_id})


async def list_runs(
    conn: psycopg.AsyncConnection,
    schedule_id: int,
    *,
    limit: int,
    before: tuple[dt.datetime, int] | None = None,
) -> list[Run]:
    before_at, before_id = before if before else (None, None)
    return await db.fetch_all_as(
        conn,
        Run,
        QUERIES["list_runs"],
        {
            "schedule_id": schedule_id,
            "limit": limit,
            "before_at": before_at,
            "before_id": before_id,
        },
    )


async def claim_run(conn: psycopg.AsyncConnection, run_id: int) -> ClaimedRun | None:
    return await db.fetch_one_as(conn, ClaimedRun, QUERIES["claim_run"], {"run_id": run_id})


async def record_attempt(
    conn: psycopg.AsyncConnection,
    run_id: int,
    *,
    outcome: str,
    final: bool,
    http_status: int | None,
    duration_ms: int | None,
    response_excerpt: str | None,
    error: str | None,
) -> bool:
    """False when the run is gone (its schedule was deleted meanwhile)."""
    row = await db.fetch_one(
        conn,
        QUERIES["record_attempt"],
        {
            "run_id": run_id,
            "outcome": outcome,
            "final": final,
            "http_status": http_status,
            "duration_ms": duration_ms,
            "response_excerpt": response_excerpt,
            "error": error,
        },
    )
    return row is not None
