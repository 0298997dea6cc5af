"""queue controls: who set a queue's limits, and a count of control changes

`limits_set_by` tells a limit an operator set at run time (the actor: `ana`, `cli:root`) from one
applied from KIOSK_QUEUE_LIMITS when the API starts (`settings`): start-up only ever writes the
latter, so a deploy never undoes an operator's change. `changes` counts every change of the row
(pause, resume, limits), for the `kiosk_queue_control_changes_total` counter: unlike audit rows it
is never pruned, so the counter never goes down.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        ALTER TABLE kiosk_queue_controls
            ADD COLUMN limits_set_by text,
            ADD COLUMN limits_set_at timestamptz,
            ADD COLUMN changes bigint NOT NULL DEFAULT 0;
        """
    )


def downgrade() -> None:
    run_sql(
        """
        ALTER TABLE kiosk_queue_controls
            DROP COLUMN IF EXISTS limits_set_by,
            DROP COLUMN IF EXISTS limits_set_at,
            DROP COLUMN IF EXISTS changes;
        """
    )
