-- CSV exports of orders, run as jobs. The CSV is stored in chunks (export_chunks), written and
-- served one chunk at a time, so neither the worker nor the API ever holds a whole file.

-- name: insert_export
-- A new export waiting for its job
INSERT INTO exports (id, created_from, created_to, requested_by)
VALUES (%(id)s, %(created_from)s, %(created_to)s, %(requested_by)s)
RETURNING id, kind, created_from, created_to, status, requested_by, job_id, row_count, error,
          created_at, finished_at;

-- name: set_job
-- Remember which job runs the export
UPDATE exports SET job_id = %(job_id)s WHERE id = %(id)s;

-- name: lock_exports
-- One export request at a time makes room under KIOSK_EXPORT_KEEP (until the transaction ends)
SELECT pg_advisory_xact_lock(hashtext('kiosk.exports.keep'));

-- name: make_room
-- Delete the oldest settled exports (done, failed, or whose job no longer waits or runs) until
-- fewer than %(keep)s remain, so that a new one fits under the cap; chunks go too (cascade).
DELETE FROM exports
 WHERE id IN (
       SELECT e.id
         FROM exports AS e
        WHERE e.status IN ('done', 'failed')
           OR NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS job
                           WHERE job.id = e.job_id AND job.status IN ('todo', 'doing'))
        ORDER BY e.created_at, e.id
        LIMIT greatest((SELECT count(*) FROM exports) - (%(keep)s - 1), 0))
RETURNING id;

-- name: count_exports
-- Exports kept (after make_room: every one beyond the cap is still running)
SELECT count(*) AS kept FROM exports;

-- name: get_export
-- One export without its content
SELECT e.id, e.kind, e.created_from, e.created_to, e.status, e.requested_by, e.job_id, e.row_count,
       e.error, e.created_at, e.finished_at, e.size_bytes, p.percent, p.message
FROM exports e
LEFT JOIN job_progress p ON p.job_id = e.job_id
WHERE e.id = %(id)s;

-- name: list_exports
-- Newest exports first, without their content, keyset-paginated by (created_at, id)
SELECT e.id, e.kind, e.created_from, e.created_to, e.status, e.requested_by, e.job_id, e.row_count,
       e.error, e.created_at, e.finished_at, e.size_bytes, p.percent, p.message
FROM exports e
LEFT JOIN job_progress p ON p.job_id = e.job_id
WHERE %(before_created_at)s::timestamptz IS NULL
   OR (e.created_at, e.id) < (%(before_created_at)s::timestamptz, %(before_id)s::uuid)
ORDER BY e.created_at DESC, e.id DESC
LIMIT %(limit)s;

-- name: get_download
-- What a download needs to know before it streams the chunks
SELECT status, size_bytes, created_from, created_to FROM exports WHERE id = %(id)s;

-- name: get_chunk
-- One chunk of a finished export's CSV, by its number (0 first)
SELECT data FROM export_chunks WHERE export_id = %(id)s AND seq = %(seq)s;

-- name: start_export
-- Claim the export for a run; a finished one is left alone (the job is idempotent)
UPDATE exports SET status = 'running', error = NULL
WHERE id = %(id)s AND status <> 'done'
RETURNING created_from, created_to;

-- name: clear_chunks
-- Forget the chunks of an earlier, interrupted attempt (in the run's own transaction)
DELETE FROM export_chunks WHERE export_id = %(id)s;

-- name: count_orders
-- Orders in the export's range, for the progress percentage
SELECT count(*) AS total FROM orders WHERE created_at >= %(created_from)s AND created_at < %(created_to)s;

-- name: orders_in_range
-- Every order in the range with its items, in (created_at, id) order on orders_created_at_idx;
-- read through a server-side cursor, a few hundred rows at a time
SELECT o.id, o.created_at, o.status, o.total_cents, o.customer_email, o.paid_at,
       (SELECT string_agg(i.sku || ' x' || i.quantity, '; ' ORDER BY i.sku)
        FROM order_items i WHERE i.order_id = o.id) AS items
FROM orders o
WHERE o.created_at >= %(created_from)s AND o.created_at < %(created_to)s
ORDER BY o.created_at, o.id;

-- name: insert_chunk
-- One chunk of the CSV, written by the run's transaction as the rows are read
INSERT INTO export_chunks (export_id, seq, data) VALUES (%(id)s, %(seq)s, %(data)s);

-- name: finish_export
-- Mark the export done (its chunks commit in the same transaction)
UPDATE exports SET status = 'done', row_count = %(row_count)s, size_bytes = %(size_bytes)s,
                   finished_at = now()
WHERE id = %(id)s;

-- name: fail_export
-- Record why the export failed (the job may still retry)
UPDATE exports SET status = 'failed', error = %(error)s, finished_at = now()
WHERE id = %(id)s AND status <> 'done';

-- name: prune_exports
-- Delete one batch of exports requested before the retention limit whose job no longer waits or
-- runs, oldest first on exports_created_idx; their chunks go with them (cascade); ids as an array,
-- probed on the primary key (`IN (subquery)` may scan the whole table every batch)
DELETE FROM exports
 WHERE id = ANY(ARRAY(
       SELECT e.id
         FROM exports AS e
        WHERE e.created_at < %(before)s
          AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS job
                           WHERE job.id = e.job_id AND job.status IN ('todo', 'doing'))
        ORDER BY e.created_at
        LIMIT %(batch_size)s
          FOR UPDATE SKIP LOCKED))
