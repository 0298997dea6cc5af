-- name: store_notifications
-- Keep a batch of notifications (ids seen before: nothing), each `received` when it is about an order, else `ignored`, and defer one processing job per provider order with a new `received` row unless one already waits (alembic 0023). One statement: on an autocommit connection, its own transaction.
SELECT id, notification_id, resource_id, state, job_id
FROM kiosk_store_notifications_v1(
    %(notification_ids)b::text[], %(types)b::text[], %(actions)b::text[],
    %(resource_ids)b::text[], %(request_ids)b::text[], %(payloads)b::text[],
    %(queue_name)s, %(task_name)s, %(priority)s);

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
