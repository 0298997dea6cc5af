"""kiosk devices: bearer tokens for the order endpoints, each device bound to its card terminals

A device holds a SHA-256 of its token, never the token (shown once when it is created).
Tokens are looked up by that hash (unique index: one index probe per request). A revoked device
keeps its row, so the audit log and its orders still name it. Orders record the device that
created them; orders made with the admin token, or before this revision, have none. The partial
index counts a device's unpaid orders (the open-order limit) without reading its history.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE devices (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
            terminal_ids text[] NOT NULL CHECK (cardinality(terminal_ids) BETWEEN 1 AND 50),
            token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        );
        CREATE UNIQUE INDEX devices_active_name_idx ON devices (name) WHERE revoked_at IS NULL;

        ALTER TABLE orders ADD COLUMN device_id bigint REFERENCES devices (id);
        CREATE INDEX orders_device_pending_idx ON orders (device_id, expires_at)
            WHERE status = 'pending_payment' AND device_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP INDEX IF EXISTS orders_device_pending_idx;
        ALTER TABLE orders DROP COLUMN IF EXISTS device_id;
        DROP TABLE IF EXISTS devices;
        """
    )
