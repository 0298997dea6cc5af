-- CSV exports of orders, run as jobs.

-- name: insert_export
-- A new export waiting for its job
INSERT INTO exports (id, created_from, created_to, requested_by)
VALUES (%(id)s, %(created_from)s, %(created_to)s, %(requested_by)s)
RETURNING id, kind, created_from, created_to, status, requested_by, job_id, row_count, error,
          created_at, finished_at;

-- name: set_job
-- Remember which job runs the export
UPDATE exports SET job_id = %(job_id)s WHERE id = %(id)s;

-- name: get_export
-- One export without its content
SELECT e.id, e.kind, e.created_from, e.created_to, e.status, e.requested_by, e.job_id, e.row_count,
       e.error, e.created_at, e.finished_at, octet_length(e.content) AS size_bytes,
       p.percent, p.message
FROM exports e
LEFT JOIN job_progress p ON p.job_id = e.job_id
WHERE e.id = %(id)s;

-- name: list_exports
-- Newest exports first, without their content
SELECT e.id, e.kind, e.created_from, e.created_to, e.status, e.requested_by, e.job_id, e.row_count,
       e.error, e.created_at, e.finished_at, octet_length(e.content) AS size_bytes,
       p.percent, p.message
FROM exports e
LEFT JOIN job_progress p ON p.job_id = e.job_id
ORDER BY e.created_at DESC
LIMIT %(limit)s;

-- name: get_content
-- The CSV of a finished export
SELECT status, content, created_from, created_to FROM exports WHERE id = %(id)s;

-- name: start_export
-- Claim the export for a run; a finished one is left alone (the job is idempotent)
UPDATE exports SET status = 'running', error = NULL
WHERE id = %(id)s AND status <> 'done'
RETURNING created_from, created_to;

-- name: count_orders
-- Orders in the export's range, for the progress percentage
SELECT count(*) AS total FROM orders WHERE created_at >= %(created_from)s AND created_at < %(created_to)s;

-- name: orders_page
-- The next page of orders in the range, keyset by (created_at, id), with their items
SELECT o.id, o.created_at, o.status, o.total_cents, o.customer_email, o.paid_at,
       (SELECT string_agg(i.sku || ' x' || i.quantity, '; ' ORDER BY i.sku)
        FROM order_items i WHERE i.order_id = o.id) AS items
FROM orders o
WHERE o.created_at >= %(created_from)s AND o.created_at < %(created_to)s
  AND (o.created_at, o.id) > (%(after_created_at)s, %(after_id)s)
ORDER BY o.created_at, o.id
LIMIT %(limit)s;

-- name: finish_export
-- Store the CSV and mark the export done
UPDATE exports SET status = 'done', content = %(content)s, row_count = %(row_count)s,
                   finished_at = now()
WHERE id = %(id)s;

-- name: fail_export
-- Record why the export failed (the job may still retry)
UPDATE exports SET status = 'failed', error = %(error)s, finished_at = now()
WHERE id = %(id)s AND status <> 'done';
