"""A big job table: N finished jobs spread over 7 days, with their events (and outcomes).

Used by bench/dashboard_big_table.py (the dashboard's pages) and bench/job_throughput.py
--big-table (the workers). One INSERT ... SELECT generate_series per table, with procrastinate's
triggers off (its events are written here instead, as its triggers would have): a million jobs take
20-40 s on the 2-core machine.
"""

from __future__ import annotations

import contextlib
import time

import psycopg

QUEUES = ["default", "mail", "payments", "exports"]
TASKS = [
    "orders.expire",
    "mail.receipt",
    "payments.process_notification",
    "exports.orders_csv",
    "orders.notify",
    "mail.digest",
    "payments.reconcile",
    "exports.cleanup",
]

FINISHED = [
    # Finished jobs, oldest first, spread over the last 7 days: job i of N at now - 7d + i * 7d / N.
    """
    INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status, attempts)
    SELECT (%(queues)s::text[])[1 + (g %% 8) %% 4], (%(tasks)s::text[])[1 + g %% 8], 0,
           jsonb_build_object('order_id', g, 'email', 'customer' || g || '@example.com'),
           'succeeded', 1
    FROM generate_series(1, %(rows)s) AS g
    """,
    # Failed ones (gave up), recent: the last 2 days.
    """
    INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status, attempts)
    SELECT (%(queues)s::text[])[1 + (g %% 8) %% 4], (%(tasks)s::text[])[1 + g %% 8], 0,
           jsonb_build_object('order_id', 5000000 + g, 'error', 'timeout'), 'failed', 3
    FROM generate_series(1, %(failed)s) AS g
    """,
]
# Waiting: fresh ones, and some that failed an attempt and wait to retry.
WAITING = """
    INSERT INTO procrastinate_jobs
           (queue_name, task_name, priority, args, status, attempts, scheduled_at)
    SELECT (%(queues)s::text[])[1 + (g %% 8) %% 4], (%(tasks)s::text[])[1 + g %% 8], 0,
           jsonb_build_object('order_id', 6000000 + g), 'todo',
           CASE WHEN g %% 10 = 0 THEN 1 ELSE 0 END,
           CASE WHEN g %% 10 = 0 THEN now() + interval '5 minutes' END
    FROM generate_series(1, %(todo)s) AS g
"""
EVENTS = """
    WITH bounds AS (SELECT max(id) AS n FROM procrastinate_jobs WHERE status = 'succeeded'),
    timed AS (
        SELECT j.id, j.status,
               CASE j.status
                   WHEN 'succeeded'
                       THEN now() - interval '7 days' + j.id * (interval '7 days' / b.n)
                   WHEN 'failed'
                       THEN now() - interval '2 days'
                            + (j.id - b.n) * (interval '2 days' / %(failed)s)
                   ELSE now() - interval '10 minutes' + (j.id %% 600) * interval '1 second'
               END AS at
        FROM procrastinate_jobs j, bounds b
    )
    INSERT INTO procrastinate_events (job_id, type, at)
    SELECT id, kind.type::procrastinate_job_event_type, at + kind.offset_s * interval '1 second'
    FROM timed
    CROSS JOIN LATERAL (VALUES ('deferred', 0), ('started', 1), (timed.status::text, 2))
               AS kind(type, offset_s)
    WHERE kind.type = 'deferred' OR timed.status IN ('succeeded', 'failed')
"""
# One outcome row per finished job, as kiosk's worker middleware writes them.
OUTCOMES = """
    INSERT INTO job_outcomes (job_id, attempt, task_name, queue_name, worker_name, status,
                              started_at, ended_at, duration_seconds, result, error_type,
                              error_message)
    SELECT j.id, j.attempts, j.task_name, j.queue_name, 'worker', j.status::text,
           e.at - interval '1 second', e.at, 0.01,
           CASE j.status WHEN 'succeeded' THEN '{"ok": true}'::jsonb END,
           CASE j.status WHEN 'failed' THEN 'TimeoutError' END,
           CASE j.status WHEN 'failed' THEN 'timed out' END
    FROM procrastinate_jobs j
    JOIN procrastinate_events e ON e.job_id = j.id AND e.type::text = j.status::text
    WHERE j.status IN ('succeeded', 'failed')
"""
AUDIT = """
    INSERT INTO admin_audit (at, actor, action, target, details)
    SELECT now() - g * interval '1 minute', 'ana', 'job.retry', 'job:' || g, '{"result": "retried"}'
    FROM generate_series(1, 2000) AS g
"""


def fill(url: str, rows: int, *, waiting: bool = True, outcomes: bool = False) -> float:
    """Add `rows` succeeded jobs (and rows / 500 failed ones) with their events; return seconds.

    `waiting`: also rows / 200 waiting jobs (a tenth of them retrying), a live worker running a
    job and a stalled one, and 2,000 audit entries: what an operator's dashboard shows. Leave them
    out to measure the workers on finished jobs only. `outcomes`: one `job_outcomes` row per
    finished job.
    """
    started = time.perf_counter()
    params = {
        "rows": rows,
        "failed": max(10, rows // 500),
        "todo": max(10, rows // 200),
        "queues": QUEUES,
        "tasks": TASKS,
    }
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            # Triggers off (procrastinate's event and notify triggers): events are written below.
            conn.execute("SET LOCAL session_replication_role = replica")
            for statement in FINISHED + ([WAITING] if waiting else []):
                conn.execute(statement, params)
            conn.execute(EVENTS, params)
            if outcomes:
                conn.execute(OUTCOMES)
            if waiting:
                conn.execute(AUDIT)
        if waiting:
            # Two workers: one live running a job, one stalled.
            conn.execute(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now()), (now() - interval '1 hour')"
            )
            conn.execute(
                "UPDATE procrastinate_jobs SET status = 'doing', "
                "worker_id = (SELECT min(id) FROM procrastinate_workers) "
                "WHERE id = (SELECT max(id) FROM procrastinate_jobs)"
            )
        conn.execute(
            "VACUUM ANALYZE procrastinate_jobs, procrastinate_events, job_outcomes, admin_audit"
        )
        # Write the fill out now: a checkpoint's writeback under the first measurement slows it.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
    return time.perf_counter() - started
