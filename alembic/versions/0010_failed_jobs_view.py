"""view for engineers: failed jobs with their last error (from job_outcomes)

docs/sql.md shows how to read it; tests/integration/test_sql_docs.py runs every query there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from kiosk.migrations import run_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        -- Jobs that gave up (status failed), each with its last attempt that did not succeed.
        -- kiosk_jobs_status_id finds the failed jobs, job_outcomes_job_idx their last attempt.
        -- A job failed before outcomes were recorded (or whose outcome row was lost) still shows,
        -- with the time of its last 'failed' event and no error.
        CREATE VIEW kiosk_failed_jobs AS
        SELECT j.id AS job_id, j.queue_name, j.task_name, j.attempts, j.args,
               coalesce(o.ended_at, (SELECT max(e.at) FROM procrastinate_events e
                                     WHERE e.job_id = j.id AND e.type = 'failed')) AS failed_at,
               o.status AS last_outcome, o.error_type, o.error_message, o.traceback
        FROM procrastinate_jobs j
        LEFT JOIN LATERAL (
            SELECT ended_at, status, error_type, error_message, traceback
            FROM job_outcomes
            WHERE job_id = j.id AND status <> 'succeeded'
            ORDER BY attempt DESC, id DESC
            LIMIT 1
        ) AS o ON true
        WHERE j.status = 'failed';
        """
    )


def downgrade() -> None:
    run_sql("DROP VIEW IF EXISTS kiosk_failed_jobs")
