"""retention: indexes for pruning every growing table, exports stored in chunks

Pruning (kiosk/retention.py) deletes the oldest rows of each table in batches; each batch is a
short range scan of one of these indexes, so the last batch does not read the rest of the table
looking for rows that are not there:
- webhook_inbox: settled notifications by time (partial: `received` rows are never pruned, and the
  webhook path only adds `ignored` rows to it; a processed row joins it on the update that
  already rewrites it);
- schedule_runs: runs by tick (the history index leads with the schedule);
- admin_audit: entries by time.
exports already has exports_created_idx, job_outcomes its BRIN on ended_at.

An export's CSV moves from one bytea on the export row to numbered chunks (export_chunks), written
and served one at a time; existing CSVs become one chunk each. Building the indexes takes a
SHARE lock on each table for its duration (seconds on a million inbox rows).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE INDEX webhook_inbox_prune_idx ON webhook_inbox (received_at)
            WHERE state <> 'received';
        CREATE INDEX schedule_runs_scheduled_for_idx ON schedule_runs (scheduled_for);
        CREATE INDEX admin_audit_at_idx ON admin_audit (at);

        CREATE TABLE export_chunks (
            export_id uuid NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
            seq integer NOT NULL CHECK (seq >= 0),
            data bytea NOT NULL,
            PRIMARY KEY (export_id, seq)
        );
        ALTER TABLE exports ADD COLUMN size_bytes bigint;
        INSERT INTO export_chunks (export_id, seq, data)
        SELECT id, 0, content FROM exports WHERE content IS NOT NULL;
        UPDATE exports SET size_bytes = octet_length(content) WHERE content IS NOT NULL;
        ALTER TABLE exports DROP COLUMN content;
        """
    )


def downgrade() -> None:
    run_sql(
        """
        ALTER TABLE exports ADD COLUMN content bytea;
        UPDATE exports SET content = chunks.data
          FROM (SELECT export_id, string_agg(data, ''::bytea ORDER BY seq) AS data
                  FROM export_chunks GROUP BY export_id) AS chunks
         WHERE exports.id = chunks.export_id;
        ALTER TABLE exports DROP COLUMN size_bytes;
        DROP TABLE export_chunks;
        DROP INDEX IF EXISTS admin_audit_at_idx;
        DROP INDEX IF EXISTS schedule_runs_scheduled_for_idx;
        DROP INDEX IF EXISTS webhook_inbox_prune_idx;
        """
    )
