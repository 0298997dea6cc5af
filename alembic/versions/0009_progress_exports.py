"""job progress and results, order exports

`job_progress` holds what a long job reports while it runs (0-100 and a message) and its result;
it goes away with its job. `exports` holds CSV exports of orders, downloadable when done.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-25
"""

from kiosk.migrations import run_sql

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE job_progress (
            job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
            percent smallint NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
            message text NOT NULL DEFAULT '',
            result jsonb,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE exports (
            id uuid PRIMARY KEY,
            kind text NOT NULL DEFAULT 'orders_csv' CHECK (kind IN ('orders_csv')),
            created_from timestamptz NOT NULL,
            created_to timestamptz NOT NULL CHECK (created_to > created_from),
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed')),
            requested_by text NOT NULL,
            job_id bigint,
            row_count integer,
            content bytea,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );
        CREATE INDEX exports_created_idx ON exports (created_at DESC);
        CREATE INDEX orders_created_at_idx ON orders (created_at, id);
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP INDEX IF EXISTS orders_created_at_idx;
        DROP TABLE IF EXISTS exports;
        DROP TABLE IF EXISTS job_progress;
        """
    )
