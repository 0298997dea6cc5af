"""schedules: operator-defined scheduled HTTP requests and their runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from kiosk.migrations import run_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        r"""
        CREATE TABLE schedules (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
            -- 5 fields, or 6 with seconds first (docs/schedules.md)
            cron text NOT NULL,
            timezone text NOT NULL DEFAULT 'UTC',
            method text NOT NULL
                CHECK (method IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')),
            url text NOT NULL,
            headers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
            body text,
            timeout_seconds double precision NOT NULL CHECK (timeout_seconds > 0),
            max_attempts integer NOT NULL CHECK (max_attempts >= 1),
            active boolean NOT NULL DEFAULT true,
            -- Dispatcher cursor: every tick up to here has its run (or was recorded as skipped).
            dispatched_until timestamptz NOT NULL DEFAULT now(),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE schedule_runs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            schedule_id bigint NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
            trigger text NOT NULL CHECK (trigger IN ('cron', 'manual')),
            -- The cron tick, or the moment "run now" was asked for.
            scheduled_for timestamptz NOT NULL,
            job_id bigint,
            outcome text NOT NULL DEFAULT 'pending' CHECK (outcome IN (
                'pending', 'running', 'retrying', 'success', 'failed', 'timeout', 'error',
                'refused', 'skipped')),
            attempts integer NOT NULL DEFAULT 0,
            attempt_log jsonb NOT NULL DEFAULT '[]',
            started_at timestamptz,
            finished_at timestamptz,
            http_status integer,
            duration_ms integer,
            response_excerpt text,
            error text,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- A tick is never created twice, whatever the number of dispatchers.
        CREATE UNIQUE INDEX schedule_runs_cron_tick
            ON schedule_runs (schedule_id, scheduled_for) WHERE trigger = 'cron';
        -- History, newest first, keyset-paginated.
        CREATE INDEX schedule_runs_history
            ON schedule_runs (schedule_id, scheduled_for DESC, id DESC);
        """
    )


def downgrade() -> None:
    run_sql("DROP TABLE IF EXISTS schedule_runs, schedules")
