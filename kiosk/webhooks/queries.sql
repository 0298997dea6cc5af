-- name: insert_notification
-- Keep an accepted notification; nothing when its id was seen before (a repeated delivery).
INSERT INTO webhook_inbox (notification_id, type, action, resource_id, request_id, payload, state)
VALUES (%(notification_id)s, %(type)s, %(action)s, %(resource_id)s, %(request_id)s, %(payload)s,
        %(state)s)
ON CONFLICT (notification_id) DO NOTHING
RETURNING id;

-- name: set_notification_outcome
-- What the webhook did with a notification: its state and the job it deferred.
UPDATE webhook_inbox SET state = %(state)s, job_id = %(job_id)s,
    processed_at = CASE WHEN %(state)s = 'received' THEN NULL ELSE now() END
WHERE id = %(id)s;

-- name: last_received
-- The newest notification still waiting for a provider order: processing covers it and older ones.
SELECT max(id) AS id FROM webhook_inbox
WHERE resource_id = %(resource_id)s AND state = 'received';

-- name: finish_received
-- Mark the notifications of a provider order that a processing run covered.
UPDATE webhook_inbox SET state = %(state)s, processed_at = now()
WHERE resource_id = %(resource_id)s AND state = 'received' AND id <= %(up_to)s;
