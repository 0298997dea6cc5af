"""admin: audit log and indexes for the operators' queries over procrastinate's tables

Indexes on procrastinate's tables are kiosk's own (named `kiosk_*`, excluded from the schema drift
check): jobs by status for filtered lists, events by type and time for throughput and time ranges.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from kiosk.migrations import run_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE admin_audit (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL,
            action text NOT NULL,
            target text NOT NULL,
            details jsonb NOT NULL DEFAULT '{}',
            remote_addr text
        );
        CREATE INDEX kiosk_jobs_status_id ON procrastinate_jobs (status, id);
        CREATE INDEX kiosk_jobs_task_id ON procrastinate_jobs (task_name, id);
        CREATE INDEX kiosk_events_type_at ON procrastinate_events (type, at);
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP INDEX IF EXISTS kiosk_events_type_at;
        DROP INDEX IF EXISTS kiosk_jobs_task_id;
        DROP INDEX IF EXISTS kiosk_jobs_status_id;
        DROP TABLE IF EXISTS admin_audit;
        """
    )
