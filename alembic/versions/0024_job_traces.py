"""tracing: the trace context each job continues (kiosk/tracing/jobs.py)

With OpenTelemetry tracing on, `kiosk.queue.defer` writes the W3C `traceparent` of the deferring
span here, keyed by job id, in the deferring transaction; the worker reads it when the job runs,
so the job's span joins the request's (or parent job's) trace. Empty while tracing is off. A row
goes with its job (ON DELETE CASCADE).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE kiosk_job_traces (
            job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
            traceparent text NOT NULL CHECK (length(traceparent) <= 128),
            tracestate text CHECK (length(tracestate) <= 512)
        );
        """
    )


def downgrade() -> None:
    run_sql("DROP TABLE kiosk_job_traces;")
