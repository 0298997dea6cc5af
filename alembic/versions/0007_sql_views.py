"""views for engineers: queue depth, job timings, slowest tasks, failures with their last error

docs/sql.md shows the questions they answer; tests/integration/test_sql_docs.py runs each query.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from kiosk.migrations import run_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        -- Waiting and running jobs per queue, and how long the oldest runnable one has waited.
        CREATE VIEW kiosk_queue_depth AS
        WITH depth AS (
            SELECT queue_name,
                   count(*) FILTER (WHERE status = 'todo') AS todo,
                   count(*) FILTER (WHERE status = 'todo'
                                    AND (scheduled_at IS NULL OR scheduled_at <= now()))
                       AS runnable,
                   count(*) FILTER (WHERE status = 'todo' AND scheduled_at > now()) AS scheduled,
                   count(*) FILTER (WHERE status = 'doing') AS doing,
                   min(id) FILTER (WHERE status = 'todo'
                                   AND (scheduled_at IS NULL OR scheduled_at <= now()))
                       AS oldest_runnable_id
            FROM procrastinate_jobs
            WHERE status IN ('todo', 'doing')
            GROUP BY queue_name
        )
        SELECT d.queue_name, d.todo, d.runnable, d.scheduled, d.doing,
               now() - (SELECT min(e.at) FROM procrastinate_events e
                        WHERE e.job_id = d.oldest_runnable_id AND e.type = 'deferred')
                   AS oldest_runnable_age
        FROM depth d;

        -- One row per job with its deferral, latest start and end times, from the event log.
        CREATE VIEW kiosk_job_timings AS
        SELECT j.id AS job_id, j.queue_name, j.task_name, j.status, j.attempts,
               t.deferred_at, t.started_at, t.finished_at,
               t.started_at - t.deferred_at AS wait,
               t.finished_at - t.started_at AS run_time
        FROM procrastinate_jobs j
        CROSS JOIN LATERAL (
            SELECT min(e.at) FILTER (WHERE e.type = 'deferred') AS deferred_at,
                   max(e.at) FILTER (WHERE e.type = 'started') AS started_at,
                   max(e.at) FILTER (
                       WHERE e.type IN ('succeeded', 'failed', 'aborted', 'cancelled')
                   ) AS finished_at
            FROM procrastinate_events e
            WHERE e.job_id = j.id
        ) AS t;

        -- Run time per task over the jobs that finished in the last 24 hours, slowest first.
        CREATE VIEW kiosk_slowest_tasks AS
        SELECT task_name,
               count(*) AS jobs,
               avg(run_time) AS mean_run_time,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY run_time) AS p95_run_time,
               max(run_time) AS max_run_time
        FROM kiosk_job_timings
        WHERE job_id >= coalesce((SELECT min(job_id) FROM procrastinate_events
                                  WHERE type = 'deferred' AND at > now() - interval '24 hours'), 0)
          AND finished_at > now() - interval '24 hours' AND run_time IS NOT NULL
        GROUP BY task_name
        ORDER BY p95_run_time DESC;
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP VIEW IF EXISTS kiosk_slowest_tasks;
        DROP VIEW IF EXISTS kiosk_job_timings;
        DROP VIEW IF EXISTS kiosk_queue_depth;
        """
    )
