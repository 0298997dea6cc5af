"""money: unresolved charges and refunds of money the kiosk cannot honour

A create whose answer was lost (5xx, timeout, connection dropped after sending) leaves its payment
intent `unresolved` until a job re-sends the same idempotency key and learns Mercado Pago's answer.
An unresolved charge may exist on its terminal, so it counts as open: at most one open charge per
order and per terminal still holds. A charge that took money for an order the kiosk cannot honour
(closed, its stock released, or paid by another charge) is refunded once: the refund columns hold
the decision, its idempotency key (kept across retries) and its outcome. docs/payments.md.

Attempts left in `error` with `outcome_unknown` by older code (an ambiguous create) become
`unresolved`, so the periodic clean-up resolves them; only the newest per order and per terminal,
and only where nothing else is open there, so the open-charge indexes still hold.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        ALTER TABLE payment_intents DROP CONSTRAINT payment_intents_status_check;
        ALTER TABLE payment_intents ADD CONSTRAINT payment_intents_status_check
            CHECK (status IN ('created', 'at_terminal', 'processed', 'failed', 'canceled',
                              'expired', 'action_required', 'refunded', 'error', 'unresolved'));

        DROP INDEX payment_intents_open_order_idx;
        DROP INDEX payment_intents_open_terminal_idx;
        CREATE UNIQUE INDEX payment_intents_open_order_idx ON payment_intents (order_id)
            WHERE status IN ('created', 'at_terminal', 'unresolved');
        CREATE UNIQUE INDEX payment_intents_open_terminal_idx ON payment_intents (terminal_id)
            WHERE status IN ('created', 'at_terminal', 'unresolved');

        ALTER TABLE payment_intents
            -- pending: decided, not confirmed yet; refunded: Mercado Pago refunded it;
            -- failed: Mercado Pago refused (an operator looks, GET /admin/payments/attention).
            ADD COLUMN refund_status text
                CHECK (refund_status IN ('pending', 'refunded', 'failed')),
            ADD COLUMN refund_idempotency_key text UNIQUE,
            ADD COLUMN refund_reason text,
            ADD COLUMN refund_requested_at timestamptz,
            ADD COLUMN refunded_at timestamptz,
            ADD COLUMN refund_last_error text;
        CREATE INDEX payment_intents_attention_idx ON payment_intents (updated_at)
            WHERE status = 'unresolved' OR refund_status IN ('pending', 'failed')
               OR (status = 'created' AND provider_order_id IS NULL);

        WITH ranked AS (
            SELECT id, order_id, terminal_id,
                   row_number() OVER (PARTITION BY order_id ORDER BY created_at DESC) AS per_order,
                   row_number() OVER (PARTITION BY terminal_id ORDER BY created_at DESC)
                       AS per_terminal
            FROM payment_intents WHERE status = 'error' AND outcome_unknown
        )
        UPDATE payment_intents p SET status = 'unresolved', updated_at = now()
        FROM ranked r
        WHERE p.id = r.id AND r.per_order = 1 AND r.per_terminal = 1
          AND NOT EXISTS (SELECT 1 FROM payment_intents o
                          WHERE o.status IN ('created', 'at_terminal')
                            AND (o.order_id = r.order_id OR o.terminal_id = r.terminal_id));
        """
    )


def downgrade() -> None:
    run_sql(
        """
        UPDATE payment_intents SET status = 'error', outcome_unknown = true
        WHERE status = 'unresolved';
        DROP INDEX IF EXISTS payment_intents_attention_idx;
        ALTER TABLE payment_intents
            DROP COLUMN refund_status, DROP COLUMN refund_idempotency_key,
            DROP COLUMN refund_reason, DROP COLUMN refund_requested_at, DROP COLUMN refunded_at,
            DROP COLUMN refund_last_error;
        DROP INDEX payment_intents_open_order_idx;
        DROP INDEX payment_intents_open_terminal_idx;
        CREATE UNIQUE INDEX payment_intents_open_order_idx ON payment_intents (order_id)
            WHERE status IN ('created', 'at_terminal');
        CREATE UNIQUE INDEX payment_intents_open_terminal_idx ON payment_intents (terminal_id)
            WHERE status IN ('created', 'at_terminal');
        ALTER TABLE payment_intents DROP CONSTRAINT payment_intents_status_check;
        ALTER TABLE payment_intents ADD CONSTRAINT payment_intents_status_check
            CHECK (status IN ('created', 'at_terminal', 'processed', 'failed', 'canceled',
                              'expired', 'action_required', 'refunded', 'error'));
        """
    )
