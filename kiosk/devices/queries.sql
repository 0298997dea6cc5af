-- name: insert_device
-- A new device with the hash of its token (the token itself is never stored).
INSERT INTO devices (name, terminal_ids, token_hash)
VALUES (%(name)s, %(terminal_ids)s, %(token_hash)s)
RETURNING id, name, terminal_ids, created_at, revoked_at;

-- name: list_devices
-- One page of devices, revoked ones included, newest first (no token hashes); keyset on id.
SELECT id, name, terminal_ids, created_at, revoked_at,
       (SELECT count(*) FROM orders o
        WHERE o.device_id = d.id AND o.status = 'pending_payment' AND o.expires_at > now()) AS open_orders
FROM devices d
WHERE %(cursor)s::bigint IS NULL OR d.id < %(cursor)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: get_device
-- One device (no token hash).
SELECT id, name, terminal_ids, created_at, revoked_at FROM devices WHERE id = %(id)s;

-- name: revoke_device
-- Revoke a device once; nothing when it is already revoked.
UPDATE devices SET revoked_at = now()
WHERE id = %(id)s AND revoked_at IS NULL
RETURNING id, name, terminal_ids, created_at, revoked_at;

-- name: device_by_token_hash
-- The active device holding a token: one probe of the unique index on token_hash.
SELECT id, name, terminal_ids, token_hash, created_at, revoked_at FROM devices
WHERE token_hash = %(token_hash)s AND revoked_at IS NULL;

-- name: lock_active_device
-- An active device, locked while one of its orders is created: a device's orders are counted and
-- created one at a time, and a revocation waits for (or wins over) the creation.
SELECT id, name FROM devices WHERE id = %(id)s AND revoked_at IS NULL FOR NO KEY UPDATE;

-- name: open_orders_of_device
-- A device's unpaid orders that still hold stock, and when the first of them expires.
SELECT count(*) AS open, min(expires_at) AS first_expires_at FROM orders
WHERE device_id = %(id)s AND status = 'pending_payment' AND expires_at > now();
