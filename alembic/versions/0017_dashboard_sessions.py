"""dashboard: server-side sessions, so that signing out ends a session

The dashboard's cookie used to be the whole session (signed, nothing stored): signing out only
deleted it in that browser, and a copy kept working for its 12 hours. Now the cookie carries a
random session id (signed); this table holds its SHA-256 (a database read gives no usable cookie),
the operator's name, its expiry and a fingerprint of the admin token it was made with. Signing out
deletes the row, "sign out everywhere" deletes them all, and a session made with another admin
token never matches.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE TABLE dashboard_sessions (
            id_hash bytea PRIMARY KEY,
            actor text NOT NULL,
            token_fingerprint bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            remote_addr text
        );
        CREATE INDEX dashboard_sessions_expires_at ON dashboard_sessions (expires_at);
        """
    )


def downgrade() -> None:
    run_sql("DROP TABLE IF EXISTS dashboard_sessions;")
