-- The audit log's queries (kiosk/audit.py); pruning stays with the admin queries (retention).

-- name: insert_audit
-- One admin action that changed something
INSERT INTO admin_audit (actor, action, target, details, remote_addr)
VALUES (%(actor)s, %(action)s, %(target)s, %(details)s, %(remote_addr)s)
RETURNING id, at;

-- name: list_audit
-- Newest first, keyset-paginated by id
SELECT id, at, actor, action, target, details, remote_addr
FROM admin_audit
WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s;
