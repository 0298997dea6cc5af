"""dashboard: index for the per-queue counts of the overview and GET /admin/queues

Measured with bench/dashboard_big_table.py on 1,000,000 jobs (docs/dashboard.md): counting jobs by
queue and status read the whole table (230 ms); with this index it is a parallel index-only scan of
a 7 MB index (80 ms). B-tree deduplication keeps it small: few distinct (queue, status) pairs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from kiosk.migrations import run_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql("CREATE INDEX kiosk_jobs_queue_status ON procrastinate_jobs (queue_name, status);")


def downgrade() -> None:
    run_sql("DROP INDEX IF EXISTS kiosk_jobs_queue_status;")
