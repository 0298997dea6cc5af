"""catalog, orders, payment intents, webhook inbox, order deliveries

Products with their stock, orders and their items (stock reserved at creation), one payment
intent per charge attempt on a Mercado Pago Point terminal, the inbox of accepted webhook
notifications and the at-most-once ledger of side effects (receipt email, notify hook).
docs/payments.md explains every state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from kiosk.migrations import run_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        r"""
        CREATE TABLE products (
            sku text PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            price_cents integer NOT NULL CHECK (price_cents >= 0),
            stock integer NOT NULL CHECK (stock >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE orders (
            id uuid PRIMARY KEY,
            status text NOT NULL DEFAULT 'pending_payment'
                CHECK (status IN ('pending_payment', 'paid', 'canceled', 'expired', 'refunded')),
            total_cents integer NOT NULL CHECK (total_cents >= 0),
            customer_email text,
            expires_at timestamptz NOT NULL,
            -- Asked to close (cancel or expire) while a charge was open on a terminal: the order
            -- takes this status once the terminal reports the charge finished without payment.
            closing_status text CHECK (closing_status IN ('canceled', 'expired')),
            closing_requested_at timestamptz,
            stock_released_at timestamptz,
            paid_intent_id uuid,
            paid_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX orders_pending_expires_at_idx ON orders (expires_at)
            WHERE status = 'pending_payment';

        CREATE TABLE order_items (
            order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
            sku text NOT NULL REFERENCES products (sku),
            name text NOT NULL,
            unit_price_cents integer NOT NULL CHECK (unit_price_cents >= 0),
            quantity integer NOT NULL CHECK (quantity > 0),
            PRIMARY KEY (order_id, sku)
        );

        CREATE TABLE payment_intents (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
            terminal_id text NOT NULL,
            provider_order_id text UNIQUE,
            provider_payment_id text,
            idempotency_key text NOT NULL UNIQUE,
            external_reference text NOT NULL UNIQUE,
            amount_cents integer NOT NULL CHECK (amount_cents > 0),
            status text NOT NULL DEFAULT 'created'
                CHECK (status IN ('created', 'at_terminal', 'processed', 'failed', 'canceled',
                                  'expired', 'action_required', 'refunded', 'error')),
            status_detail text,
            -- The provider call failed in a way that may still have created the charge: the next
            -- attempt on the same terminal re-sends this intent's idempotency key.
            outcome_unknown boolean NOT NULL DEFAULT false,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX payment_intents_order_idx ON payment_intents (order_id);
        -- At most one open charge per order and per terminal.
        CREATE UNIQUE INDEX payment_intents_open_order_idx ON payment_intents (order_id)
            WHERE status IN ('created', 'at_terminal');
        CREATE UNIQUE INDEX payment_intents_open_terminal_idx ON payment_intents (terminal_id)
            WHERE status IN ('created', 'at_terminal');

        CREATE TABLE webhook_inbox (
            id bigserial PRIMARY KEY,
            notification_id text NOT NULL UNIQUE,
            type text NOT NULL,
            action text,
            resource_id text,
            request_id text,
            payload jsonb NOT NULL,
            state text NOT NULL DEFAULT 'received'
                CHECK (state IN ('received', 'processed', 'ignored')),
            job_id bigint,
            received_at timestamptz NOT NULL DEFAULT now(),
            processed_at timestamptz
        );
        CREATE INDEX webhook_inbox_received_idx ON webhook_inbox (resource_id)
            WHERE state = 'received';

        CREATE TABLE order_deliveries (
            order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
            kind text NOT NULL CHECK (kind IN ('receipt', 'notify_paid')),
            state text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sending', 'sent', 'unknown', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            claimed_at timestamptz,
            finished_at timestamptz,
            PRIMARY KEY (order_id, kind)
        );
        """
    )


def downgrade() -> None:
    run_sql(
        """
        DROP TABLE IF EXISTS order_deliveries, webhook_inbox, payment_intents, order_items,
            orders, products;
        """
    )
