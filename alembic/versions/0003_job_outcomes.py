"""job outcomes: one row per attempt of every job (kiosk/jobs/outcomes.py)

procrastinate keeps no result, error or duration; the worker middleware writes them here. No
foreign key to procrastinate_jobs: a job may be deleted (`--delete-jobs`, pruning) while its
outcomes are still wanted, and the insert must never fail because of the job row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from kiosk.migrations import run_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE job_outcomes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id bigint NOT NULL,
            attempt integer NOT NULL CHECK (attempt >= 1),
            task_name text NOT NULL,
            queue_name text NOT NULL,
            worker_id bigint,
            worker_name text,
            status text NOT NULL CHECK (status IN (
                'succeeded', 'failed', 'timed_out', 'aborted', 'interrupted', 'worker_lost'
            )),
            started_at timestamptz NOT NULL,
            ended_at timestamptz NOT NULL,
            duration_seconds double precision NOT NULL,
            result jsonb,
            error_type text,
            error_message text,
            traceback text
        );
        -- "outcomes of job X", and deleting them with their job when it is pruned
        CREATE INDEX job_outcomes_job_idx ON job_outcomes (job_id, attempt);
        -- recent failures, overall and by task: partial, so successes never touch them
        CREATE INDEX job_outcomes_failures_idx ON job_outcomes (ended_at DESC)
            WHERE status <> 'succeeded';
        CREATE INDEX job_outcomes_task_failures_idx ON job_outcomes (task_name, ended_at DESC)
            WHERE status <> 'succeeded';
        -- age-based pruning of an append-only table: BRIN is tiny and nearly free to maintain
        CREATE INDEX job_outcomes_ended_brin ON job_outcomes USING brin (ended_at);
        """
    )


def downgrade() -> None:
    run_sql("DROP TABLE IF EXISTS job_outcomes")
