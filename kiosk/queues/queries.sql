-- Queue controls (kiosk/queues): pause, rate limit and concurrency cap per queue, read by every
-- worker's fetch (kiosk/jobs). Every write bumps `changes` (the control-changes counter).

-- name: list_controls
-- Every queue with a control row, by name
SELECT queue AS name, paused, paused_reason, paused_by, paused_at, max_per_second, max_running,
       limits_set_by, limits_set_at, updated_at, changes
FROM kiosk_queue_controls
ORDER BY queue;

-- name: get_control
-- One queue's control row
SELECT queue AS name, paused, paused_reason, paused_by, paused_at, max_per_second, max_running,
       limits_set_by, limits_set_at, updated_at, changes
FROM kiosk_queue_controls
WHERE queue = %(queue)s;

-- name: pause
-- Pause a queue (creating its row); pausing a paused queue keeps when it was paused, takes the new reason
INSERT INTO kiosk_queue_controls AS c (queue, paused, paused_reason, paused_by, paused_at, changes)
VALUES (%(queue)s, true, %(reason)s, %(actor)s, now(), 1)
ON CONFLICT (queue) DO UPDATE
SET paused = true,
    paused_reason = excluded.paused_reason,
    paused_by = excluded.paused_by,
    paused_at = CASE WHEN c.paused THEN c.paused_at ELSE now() END,
    updated_at = now(),
    changes = c.changes + 1
RETURNING queue AS name, paused, paused_reason, paused_by, paused_at, max_per_second, max_running,
          limits_set_by, limits_set_at, updated_at, changes;

-- name: resume
-- Resume a paused queue; no row when it was not paused (nothing changes then)
UPDATE kiosk_queue_controls
SET paused = false, paused_reason = NULL, paused_by = NULL, paused_at = NULL,
    updated_at = now(), changes = changes + 1
WHERE queue = %(queue)s AND paused
RETURNING queue AS name, paused, paused_reason, paused_by, paused_at, max_per_second, max_running,
          limits_set_by, limits_set_at, updated_at, changes;

-- name: set_limits
-- A queue's limits (null: none), replacing both, owned by `actor` from now on. An operator's
-- limits (`default` false) always land; a default from the settings (`default` true) lands unless
-- an operator set the queue's limits, and only when it changes them: no row when nothing changed
INSERT INTO kiosk_queue_controls AS c
    (queue, max_per_second, max_running, limits_set_by, limits_set_at, changes)
VALUES (%(queue)s, %(max_per_second)s, %(max_running)s, %(actor)s, now(), 1)
ON CONFLICT (queue) DO UPDATE
SET max_per_second = excluded.max_per_second,
    max_running = excluded.max_running,
    limits_set_by = excluded.limits_set_by,
    limits_set_at = now(),
    updated_at = now(),
    changes = c.changes + 1
WHERE NOT %(default)s
   OR ((c.limits_set_by IS NULL OR c.limits_set_by = excluded.limits_set_by)
       AND (c.limits_set_by IS NULL
            OR c.max_per_second IS DISTINCT FROM excluded.max_per_second
            OR c.max_running IS DISTINCT FROM excluded.max_running))
RETURNING queue AS name, paused, paused_reason, paused_by, paused_at, max_per_second, max_running,
          limits_set_by, limits_set_at, updated_at, changes;

-- name: clear_dropped_defaults
-- Limits the settings set on queues they no longer list are cleared
UPDATE kiosk_queue_controls
SET max_per_second = NULL, max_running = NULL, limits_set_by = NULL, limits_set_at = NULL,
    updated_at = now(), changes = changes + 1
WHERE limits_set_by = %(actor)s AND NOT (queue = ANY(%(keep)s::text[]))
RETURNING queue AS name, paused, paused_reason, paused_by, paused_at, max_per_second, max_running,
          limits_set_by, limits_set_at, updated_at, changes;
