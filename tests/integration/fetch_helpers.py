"""For the batched-fetch and queue-controls tests: workers on the fetch test app, bulk jobs."""

from __future__ import annotations

import json
from typing import Any

from tests.support import wait_for
from tests.support.fetch_app import FETCH_TABLES
from tests.support.jobs import TABLES, AppWorker, Sql

FETCH_APP = "tests.support.fetch_app.app"
SWEEP_APP = "tests.support.sweep_app.app"  # the same, plus the stalled-job sweep every 2 s


def sql_connection(database_url):
    """The `sql` fixture of these tests: `sql = pytest.fixture(sql_connection, name="sql")`."""
    sql = Sql(database_url)
    sql.conn.execute(TABLES + FETCH_TABLES)
    yield sql
    sql.close()


def worker_processes():
    """The `workers` fixture: every worker started is killed at the end."""
    started: list[AppWorker] = []
    yield started
    for worker in started:
        worker.popen.kill() if worker.alive() else None
        worker.stop(timeout=5)


def start(
    workers,
    sql: Sql,
    database_url,
    log_dir,
    count: int = 1,
    *args: str,
    app: str = FETCH_APP,
    **env: str,
):
    """Start `count` workers on the fetch test app; wait until all of them are registered."""
    # By id: a starting worker deletes stalled ones, so the count can go down.
    before = sql.value("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
    new = [
        AppWorker(database_url, log_dir, *args, app=app, name=f"w{len(workers) + n}", **env)
        for n in range(count)
    ]
    workers.extend(new)
    wait_for(
        lambda: (
            sql.value("SELECT count(*) FROM procrastinate_workers WHERE id > %s", before) >= count
        ),
        timeout=90,
        what=f"{count} workers registered",
    )
    return new


def insert_jobs(
    sql: Sql,
    count: int,
    *,
    task: str = "tests.fetch.run",
    queue: str = "default",
    priority: int = 0,
    lock: str | None = None,
    key: str = "job",
    **kwargs: Any,
) -> list[int]:
    """`count` jobs in one transaction (procrastinate's own defer function): one NOTIFY batch."""
    rows = sql.all(
        "SELECT unnest(procrastinate_defer_jobs_v1(array_agg(ROW("
        "  %s, %s, %s, %s, NULL, %s::jsonb || jsonb_build_object('key', %s || '-' || g), NULL"
        ")::procrastinate_job_to_defer_v1 ORDER BY g))) AS id FROM generate_series(1, %s) AS g",
        queue,
        task,
        priority,
        lock,
        json.dumps(kwargs),
        key,
        count,
    )
    return [row["id"] for row in rows]


def runs(sql: Sql, queue: str | None = None) -> list[dict[str, Any]]:
    return sql.all(
        "SELECT job_id, key, queue, pid, extract(epoch FROM started_at)::float AS started, "
        "extract(epoch FROM ended_at)::float AS ended FROM test_fetch_runs "
        "WHERE %s::text IS NULL OR queue = %s ORDER BY started_at",
        queue,
        queue,
    )


def done(sql: Sql, ids: list[int]) -> bool:
    return sql.value(
        "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'succeeded'",
        ids,
    ) == len(ids)


def fetch_batches(sql: Sql, ids: list[int]) -> list[list[int]]:
    """The jobs of each round trip: a fetch stamps its `started` events with its transaction's
    time, so the events of one round trip share a timestamp."""
    rows = sql.all(
        "SELECT array_agg(job_id ORDER BY job_id) AS ids FROM procrastinate_events "
        "WHERE type = 'started' AND job_id = ANY(%s) GROUP BY at ORDER BY at",
        ids,
    )
    return [row["ids"] for row in rows]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def most_in_a_second(starts: list[float]) -> int:
    """The most starts in any 1-second window [t, t + 1)."""
    starts = sorted(starts)
    most = 0
    for i, first in enumerate(starts):
        most = max(most, sum(1 for s in starts[i:] if s < first + 1.0))
    return most
