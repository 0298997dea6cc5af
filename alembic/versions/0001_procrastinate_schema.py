"""procrastinate 3.10.0 schema

The schema procrastinate 3.10.0 ships (`procrastinate/sql/schema.sql`), frozen in
`sql/procrastinate_3.10.0_schema.sql`: it equals procrastinate's migrations up to and including
PROCRASTINATE_LAST_MIGRATION below. A later procrastinate release adds migration files; each one
becomes its own revision after this one (docs/migrations.md), and
tests/integration/test_schema_drift.py fails until that is done.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from pathlib import Path

from kiosk.migrations import run_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PROCRASTINATE_VERSION = "3.10.0"
PROCRASTINATE_LAST_MIGRATION = "03.04.00_50_post_add_retry_failed_job_procedure.sql"

_SCHEMA = Path(__file__).parent / "sql" / f"procrastinate_{PROCRASTINATE_VERSION}_schema.sql"


def upgrade() -> None:
    run_sql(_SCHEMA.read_text(encoding="utf-8"))


def downgrade() -> None:
    run_sql(
        r"""
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
            procrastinate_jobs, procrastinate_workers CASCADE;
        DO $$
        DECLARE fn regprocedure;
        BEGIN
            FOR fn IN
                SELECT p.oid::regprocedure FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\_%'
            LOOP
                EXECUTE 'DROP FUNCTION ' || fn || ' CASCADE';
            END LOOP;
        END $$;
        DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type,
            procrastinate_job_status CASCADE;
        """
    )
