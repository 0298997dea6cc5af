-- name: plan_delivery
-- Record that a side effect is owed for an order (once: the paid transition happens once).
INSERT INTO order_deliveries (order_id, kind) VALUES (%(order_id)s, %(kind)s)
ON CONFLICT (order_id, kind) DO NOTHING
RETURNING order_id;

-- name: claim_delivery
-- Take a pending delivery before sending it; committed before anything leaves the kiosk.
UPDATE order_deliveries
SET state = 'sending', attempts = attempts + 1, claimed_at = now()
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'pending'
RETURNING attempts;

-- name: get_delivery
-- One delivery.
SELECT * FROM order_deliveries WHERE order_id = %(order_id)s AND kind = %(kind)s;

-- name: finish_delivery
-- The outcome of a claimed delivery: sent, unknown (maybe sent), failed, or pending again.
UPDATE order_deliveries
SET state = %(state)s, last_error = %(last_error)s,
    finished_at = CASE WHEN %(state)s = 'pending' THEN NULL ELSE now() END
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'sending';

-- name: abandon_delivery
-- A delivery found claimed by an attempt that never reported back: it may have been sent.
UPDATE order_deliveries
SET state = 'unknown', finished_at = now(),
    last_error = 'an earlier attempt stopped while sending; not sent again (at most once)'
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'sending';
