-- name: insert_notifications
-- Keep a batch of notifications (ids seen before: nothing), each `received` when it is about an order (a job reads it: one no intent knows yet is matched by its external_reference), else `ignored`.
WITH incoming AS (
    SELECT n.*, intent.order_id
    FROM unnest(%(notification_ids)b::text[], %(types)b::text[], %(actions)b::text[],
                %(resource_ids)b::text[], %(request_ids)b::text[], %(payloads)b::text[])
        WITH ORDINALITY AS n(notification_id, type, action, resource_id, request_id, payload, position)
    LEFT JOIN payment_intents AS intent
        ON n.type = 'order' AND intent.provider_order_id = n.resource_id
), inserted AS (
    INSERT INTO webhook_inbox (notification_id, type, action, resource_id, request_id, payload,
                               state, processed_at)
    SELECT notification_id, type, action, resource_id, request_id, payload::jsonb,
           CASE WHEN type = 'order' THEN 'received' ELSE 'ignored' END,
           CASE WHEN type <> 'order' THEN now() END
    FROM incoming ORDER BY position
    ON CONFLICT (notification_id) DO NOTHING
    RETURNING id, notification_id, resource_id, state
)
SELECT inserted.id, inserted.notification_id, inserted.resource_id, inserted.state, incoming.order_id
FROM inserted JOIN incoming USING (notification_id);

-- name: set_notification_jobs
-- Record the job each newly stored notification deferred (`id = ANY`: found by primary key, never a scan of the inbox).
UPDATE webhook_inbox SET job_id = batch.job_id
FROM unnest(%(ids)b::bigint[], %(job_ids)b::bigint[]) AS batch(id, job_id)
WHERE webhook_inbox.id = ANY(%(ids)b::bigint[]) AND webhook_inbox.id = batch.id;

-- name: last_received
-- The newest notification still waiting for a provider order: processing covers it and older ones.
SELECT max(id) AS id FROM webhook_inbox
WHERE resource_id = %(resource_id)s AND state = 'received';

-- name: finish_received
-- Mark the notifications of a provider order that a processing run covered.
UPDATE webhook_inbox SET state = %(state)s, processed_at = now()
WHERE resource_id = %(resource_id)s AND state = 'received' AND id <= %(up_to)s;

-- name: prune_inbox
-- Delete one batch of settled notifications (processed or ignored) received before the retention
-- limit, oldest first on webhook_inbox_prune_idx. `received` rows stay: their job has not finished
-- (a collapsed one has no job_id of its own), and neither does a row whose recorded job still
-- waits or runs. The ids go as an array, probed on the primary key: `IN (subquery)` let the
-- planner hash-join a scan of the whole table, every batch.
DELETE FROM webhook_inbox
 WHERE id = ANY(ARRAY(
       SELECT inbox.id
         FROM webhook_inbox AS inbox
        WHERE inbox.received_at < %(before)s AND inbox.state <> 'received'
          AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS job
                           WHERE job.id = inbox.job_id AND job.status IN ('todo', 'doing'))
        ORDER BY inbox.received_at
        LIMIT %(batch_size)s
          FOR UPDATE SKIP LOCKED))
