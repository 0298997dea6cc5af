"""deliveries at least once: retry bookkeeping of the receipt and the order-paid hook

`order_deliveries` was an at-most-once ledger; it now drives at-least-once delivery:
- `id`: a stable key for the operators' list, paginated newest first like the other admin lists;
- `payload`: the order-paid hook's body, frozen when the order became paid, so that every attempt
  signs and sends the same bytes;
- `window_started_at`: when the current delivery window began (planned, or an operator's manual
  resend); the maximum age and attempts are counted from it;
- `next_attempt_at`: when a failed attempt is due again (the periodic resume sweep uses it);
- `maybe_delivered`: an attempt's outcome was unknown, so the receiver may hold a copy;
- `resends`: attempts made after such an attempt, i.e. the copies a receiver may have to drop.

Rows left `unknown` by the at-most-once rule are now owed again: they are marked
`maybe_delivered` and the periodic `orders.resume_deliveries` sends them (or gives up on those
past the maximum age, which then appear in the operators' list).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        ALTER TABLE order_deliveries
            ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY,
            ADD COLUMN payload bytea,
            ADD COLUMN window_started_at timestamptz,
            ADD COLUMN next_attempt_at timestamptz,
            ADD COLUMN maybe_delivered boolean NOT NULL DEFAULT false,
            ADD COLUMN resends integer NOT NULL DEFAULT 0;
        UPDATE order_deliveries
        SET window_started_at = created_at,
            maybe_delivered = (state = 'unknown');
        ALTER TABLE order_deliveries
            ALTER COLUMN window_started_at SET DEFAULT now(),
            ALTER COLUMN window_started_at SET NOT NULL;
        CREATE UNIQUE INDEX order_deliveries_id ON order_deliveries (id);
        -- The operators' list, the metric and the resume sweep read only deliveries not sent,
        -- which stay few however many orders were paid.
        CREATE INDEX order_deliveries_not_sent ON order_deliveries (state, id)
            WHERE state <> 'sent';
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP INDEX IF EXISTS order_deliveries_not_sent;
        DROP INDEX IF EXISTS order_deliveries_id;
        ALTER TABLE order_deliveries
            DROP COLUMN IF EXISTS resends,
            DROP COLUMN IF EXISTS maybe_delivered,
            DROP COLUMN IF EXISTS next_attempt_at,
            DROP COLUMN IF EXISTS window_started_at,
            DROP COLUMN IF EXISTS payload,
            DROP COLUMN IF EXISTS id;
        """
    )
