-- name: insert_intent
-- A new charge attempt, written before Mercado Pago is called so no provider order is ever unknown.
INSERT INTO payment_intents (id, order_id, terminal_id, idempotency_key, external_reference,
                             amount_cents)
VALUES (%(id)s, %(order_id)s, %(terminal_id)s, %(idempotency_key)s, %(external_reference)s,
        %(amount_cents)s)
RETURNING *;

-- name: reopen_intent
-- Try an attempt whose outcome is unknown again, with its own idempotency key.
UPDATE payment_intents
SET status = 'created', last_error = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'error' AND outcome_unknown
RETURNING *;

-- name: get_intent
-- One payment intent.
SELECT * FROM payment_intents WHERE id = %(id)s;

-- name: lock_intent
-- One payment intent, locked (always after its order).
SELECT * FROM payment_intents WHERE id = %(id)s FOR UPDATE;

-- name: intent_by_provider_order
-- The payment intent of a Mercado Pago order.
SELECT * FROM payment_intents WHERE provider_order_id = %(provider_order_id)s;

-- name: intents_of_order
-- Every charge attempt of an order, oldest first.
SELECT * FROM payment_intents WHERE order_id = %(order_id)s ORDER BY created_at, id;

-- name: open_intent_of_order
-- The charge still open (created or on the terminal) for an order, if any.
SELECT * FROM payment_intents WHERE order_id = %(order_id)s AND status IN ('created', 'at_terminal');

-- name: open_intent_on_terminal
-- The charge still open on a terminal, if any.
SELECT * FROM payment_intents
WHERE terminal_id = %(terminal_id)s AND status IN ('created', 'at_terminal');

-- name: retryable_intent
-- The latest attempt on this order and terminal whose outcome is unknown (to re-send its key).
SELECT * FROM payment_intents
WHERE order_id = %(order_id)s AND terminal_id = %(terminal_id)s AND status = 'error'
  AND outcome_unknown
ORDER BY created_at DESC LIMIT 1;

-- name: set_provider_order
-- Link the attempt to the order Mercado Pago created for it.
UPDATE payment_intents
SET provider_order_id = %(provider_order_id)s, outcome_unknown = false, updated_at = now()
WHERE id = %(id)s;

-- name: fail_intent
-- The provider call failed: `error`, with whether the charge may exist anyway.
UPDATE payment_intents
SET status = 'error', outcome_unknown = %(outcome_unknown)s, last_error = %(last_error)s,
    updated_at = now()
WHERE id = %(id)s AND status = 'created' AND provider_order_id IS NULL;

-- name: advance_intent
-- Move to Mercado Pago's status, forward only: created -> at_terminal -> final; processed -> refunded.
UPDATE payment_intents
SET status = %(status)s, status_detail = %(status_detail)s,
    provider_payment_id = coalesce(%(provider_payment_id)s, provider_payment_id), updated_at = now()
WHERE id = %(id)s AND (
    (status = 'created' AND %(status)s <> 'created')
    OR (status = 'at_terminal' AND %(status)s NOT IN ('created', 'at_terminal'))
    OR (status = 'processed' AND %(status)s = 'refunded')
)
RETURNING *;

-- name: stale_intents
-- Open charges unchanged for `ttl` seconds: Mercado Pago should have ended them (cleanup job).
SELECT id, order_id, provider_order_id, status FROM payment_intents
WHERE status IN ('created', 'at_terminal')
  AND updated_at <= now() - make_interval(secs => %(ttl)s)
ORDER BY updated_at LIMIT %(limit)s;

-- name: abandon_intent
-- A charge whose start never recorded Mercado Pago's answer (its process died): error, maybe charged.
UPDATE payment_intents
SET status = 'error', outcome_unknown = true, last_error = %(last_error)s, updated_at = now()
WHERE id = %(id)s AND status = 'created' AND provider_order_id IS NULL
  AND updated_at <= now() - make_interval(secs => %(ttl)s)
RETURNING *;
