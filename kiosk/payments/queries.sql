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

-- name: intent_by_reference
-- The payment intent that sent this external_reference to Mercado Pago.
SELECT * FROM payment_intents WHERE external_reference = %(external_reference)s;

-- name: intents_of_order
-- Every charge attempt of an order, oldest first.
SELECT * FROM payment_intents WHERE order_id = %(order_id)s ORDER BY created_at, id;

-- name: open_intent_of_order
-- The charge still open (created, on the terminal, or unresolved: it may exist) for an order, if any.
SELECT * FROM payment_intents
WHERE order_id = %(order_id)s AND status IN ('created', 'at_terminal', 'unresolved');

-- name: open_intent_on_terminal
-- The charge still open on a terminal, if any.
SELECT * FROM payment_intents
WHERE terminal_id = %(terminal_id)s AND status IN ('created', 'at_terminal', 'unresolved');

-- name: retryable_intent
-- The latest attempt on this order and terminal whose outcome is unknown (to re-send its key).
SELECT * FROM payment_intents
WHERE order_id = %(order_id)s AND terminal_id = %(terminal_id)s AND status = 'error'
  AND outcome_unknown
ORDER BY created_at DESC LIMIT 1;

-- name: set_provider_order
-- Link the attempt to the order Mercado Pago created for it (never to a second one).
UPDATE payment_intents
SET provider_order_id = %(provider_order_id)s, outcome_unknown = false, updated_at = now()
WHERE id = %(id)s AND (provider_order_id IS NULL OR provider_order_id = %(provider_order_id)s)
RETURNING *;

-- name: fail_intent
-- The provider call failed and created nothing (refused, or never reached Mercado Pago): `error`.
UPDATE payment_intents
SET status = 'error', outcome_unknown = %(outcome_unknown)s, last_error = %(last_error)s,
    updated_at = now()
WHERE id = %(id)s AND status = 'created' AND provider_order_id IS NULL;

-- name: mark_unresolved
-- The create's answer was lost (5xx, timeout, connection dropped after sending): the charge may
-- exist. Its resolution job is deferred in the same transaction.
UPDATE payment_intents
SET status = 'unresolved', outcome_unknown = true, last_error = %(last_error)s, updated_at = now()
WHERE id = %(id)s AND status = 'created' AND provider_order_id IS NULL
RETURNING *;

-- name: fail_resolution
-- Mercado Pago refused the re-sent create (4xx): no charge exists for this attempt.
UPDATE payment_intents
SET status = 'failed', outcome_unknown = false, last_error = %(last_error)s, updated_at = now()
WHERE id = %(id)s AND status = 'unresolved' AND provider_order_id IS NULL
RETURNING *;

-- name: advance_intent
-- Move to Mercado Pago's status, forward only: created -> at_terminal -> final; processed -> refunded;
-- unresolved -> whatever Mercado Pago says; a linked `error` attempt only to a final state.
UPDATE payment_intents
SET status = %(status)s, status_detail = %(status_detail)s,
    provider_payment_id = coalesce(%(provider_payment_id)s, provider_payment_id), updated_at = now()
WHERE id = %(id)s AND (
    (status = 'unresolved')
    OR (status = 'error' AND %(status)s NOT IN ('created', 'at_terminal'))
    OR (status = 'created' AND %(status)s <> 'created')
    OR (status = 'at_terminal' AND %(status)s NOT IN ('created', 'at_terminal'))
    OR (status = 'processed' AND %(status)s = 'refunded')
)
RETURNING *;

-- name: stale_intents
-- Open charges unchanged for `ttl` seconds: Mercado Pago should have ended them (cleanup job).
SELECT * FROM payment_intents
WHERE status IN ('created', 'at_terminal')
  AND updated_at <= now() - make_interval(secs => %(ttl)s)
ORDER BY updated_at LIMIT %(limit)s;

-- name: orphan_starts
-- Starts that never recorded Mercado Pago's answer after `age` seconds (their process died between
-- writing the intent and the call, or during it), and unresolved charges whose job may have given
-- up: both are resolved by re-sending their idempotency key (cleanup job).
SELECT * FROM payment_intents
WHERE ((status = 'created' AND provider_order_id IS NULL) OR status = 'unresolved')
  AND updated_at <= now() - make_interval(secs => %(age)s)
ORDER BY updated_at LIMIT %(limit)s;

-- name: unresolve_orphan
-- An orphan start becomes unresolved (if it still is one) so its resolution job takes it.
UPDATE payment_intents
SET status = 'unresolved', outcome_unknown = true, updated_at = now(),
    last_error = 'its start never recorded Mercado Pago''s answer'
WHERE id = %(id)s AND status = 'created' AND provider_order_id IS NULL
  AND updated_at <= now() - make_interval(secs => %(age)s)
RETURNING *;

-- name: request_refund
-- Decide the refund of a charge that took money the kiosk cannot honour: once per charge, with
-- one idempotency key kept across every retry. Its job is deferred in the same transaction.
UPDATE payment_intents
SET refund_status = 'pending', refund_idempotency_key = %(idempotency_key)s,
    refund_reason = %(reason)s, refund_requested_at = now(), refund_last_error = NULL
WHERE id = %(id)s AND status = 'processed' AND refund_status IS NULL
RETURNING *;

-- name: finish_refund
-- Mercado Pago says the charge is refunded: the refund is done (once).
UPDATE payment_intents
SET refund_status = 'refunded', refunded_at = now(), refund_last_error = NULL
WHERE id = %(id)s AND refund_status IN ('pending', 'failed')
RETURNING *;

-- name: fail_refund
-- Mercado Pago refused the refund: an operator looks (GET /admin/payments/attention).
UPDATE payment_intents
SET refund_status = 'failed', refund_last_error = %(last_error)s
WHERE id = %(id)s AND refund_status = 'pending'
RETURNING *;

-- name: retry_refund
-- An operator asks for a failed refund again (same idempotency key).
UPDATE payment_intents
SET refund_status = 'pending', refund_last_error = NULL, refund_requested_at = now()
WHERE id = %(id)s AND refund_status = 'failed'
RETURNING *;

-- name: stuck_refunds
-- Refunds still pending after `age` seconds (their job may have given up): deferred again.
SELECT * FROM payment_intents
WHERE refund_status = 'pending' AND refund_requested_at <= now() - make_interval(secs => %(age)s)
ORDER BY refund_requested_at LIMIT %(limit)s;

-- name: attention
-- Payments an operator should look at: charges unresolved (or starts unrecorded) for `age` seconds,
-- refunds failed, or pending for `age` seconds. Oldest first.
SELECT p.id, p.order_id, p.terminal_id, p.provider_order_id, p.status, p.last_error, p.amount_cents,
       p.external_reference, p.created_at, p.updated_at, p.refund_status, p.refund_reason,
       p.refund_requested_at, p.refund_last_error, o.status AS order_status, o.closing_status,
       CASE WHEN p.refund_status IN ('pending', 'failed') THEN 'refund' ELSE 'unresolved' END AS kind
FROM payment_intents p JOIN orders o ON o.id = p.order_id
WHERE ((p.status = 'unresolved' OR (p.status = 'created' AND p.provider_order_id IS NULL))
       AND p.updated_at <= now() - make_interval(secs => %(age)s))
   OR p.refund_status = 'failed'
   OR (p.refund_status = 'pending' AND p.refund_requested_at <= now() - make_interval(secs => %(age)s))
ORDER BY p.updated_at LIMIT %(limit)s;

-- name: refund_counts
-- Refunds by outcome, for /metrics (refunded is final, so that count only goes up).
SELECT refund_status, count(*) AS n FROM payment_intents
WHERE refund_status IS NOT NULL GROUP BY refund_status;

-- name: lock_order_of_intent
-- Lock a charge's order row before changing the charge (the order first, then the intent).
SELECT id FROM orders WHERE id = %(order_id)s FOR UPDATE;
