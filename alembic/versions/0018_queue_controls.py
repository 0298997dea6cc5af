"""queues: controls kept by kiosk (pause, rate limit, concurrency cap) for every worker

procrastinate has no pause and no limits; kiosk keeps them in its own table, which every worker
reads when it fetches jobs (kiosk/jobs/). A row exists once an operator (or a default from code or
settings) set something: a queue can be paused before any job of it exists. No row = no control.
`kiosk_queue_starts` is the sliding window of recent starts of rate-limited queues.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE kiosk_queue_controls (
            queue text PRIMARY KEY CHECK (queue ~ '^[A-Za-z0-9._-]{1,64}$'),
            paused boolean NOT NULL DEFAULT false,
            paused_reason text,
            paused_by text,
            paused_at timestamptz,
            max_per_second double precision CHECK (max_per_second > 0),
            max_running integer CHECK (max_running > 0),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE kiosk_queue_starts (
            queue text NOT NULL,
            started_at timestamptz NOT NULL
        );
        CREATE INDEX kiosk_queue_starts_queue_started_at
            ON kiosk_queue_starts (queue, started_at);
        """
    )


def downgrade() -> None:
    run_sql("DROP TABLE IF EXISTS kiosk_queue_starts; DROP TABLE IF EXISTS kiosk_queue_controls;")
