-- name: plan_delivery
-- Record that a side effect is owed for an order (once: the paid transition happens once).
INSERT INTO order_deliveries (order_id, kind, payload) VALUES (%(order_id)s, %(kind)s, %(payload)s)
ON CONFLICT (order_id, kind) DO NOTHING
RETURNING order_id;

-- name: lock_delivery
-- One delivery, locked until the caller's transaction ends, with the database's clock.
SELECT *, now() AS now FROM order_deliveries
WHERE order_id = %(order_id)s AND kind = %(kind)s
FOR UPDATE;

-- name: claim_delivery
-- Take a delivery that is owed before sending it; committed before anything leaves the kiosk.
-- A claim still `sending` belonged to an attempt that died (its worker was killed, or it could
-- not record its outcome): it may have been delivered, so this attempt is a resend.
UPDATE order_deliveries
SET state = 'sending', attempts = attempts + 1, claimed_at = now(), next_attempt_at = NULL,
    payload = coalesce(payload, %(payload)s),
    resends = resends + CASE WHEN maybe_delivered OR state IN ('sending', 'unknown') THEN 1 ELSE 0 END,
    maybe_delivered = maybe_delivered OR state IN ('sending', 'unknown'),
    last_error = CASE WHEN state = 'sending'
                      THEN 'attempt ' || attempts || ' stopped while sending (its worker died or lost '
                           'the database): it may have been delivered'
                      ELSE last_error END
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state IN ('pending', 'unknown', 'sending')
RETURNING attempts, resends, maybe_delivered, payload, state, last_error;

-- name: give_up_delivery
-- Stop retrying a delivery past its maximum age or attempts: `failed`, in the operators' list.
UPDATE order_deliveries
SET state = 'failed', finished_at = now(), next_attempt_at = NULL,
    maybe_delivered = maybe_delivered OR state IN ('sending', 'unknown'),
    last_error = left(%(reason)s || coalesce('; last error: ' || last_error, ''), 1000)
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state IN ('pending', 'unknown', 'sending')
RETURNING last_error;

-- name: delivered
-- The receiver took the claimed attempt (SMTP 250 after DATA, HTTP 2xx).
UPDATE order_deliveries
SET state = 'sent', finished_at = now(), next_attempt_at = NULL
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'sending' AND attempts = %(attempt)s
RETURNING attempts;

-- name: refuse_delivery
-- The receiver refused the claimed attempt for good (SMTP 5xx, HTTP 4xx, a URL the guard refuses).
UPDATE order_deliveries
SET state = 'failed', finished_at = now(), next_attempt_at = NULL, last_error = %(last_error)s
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'sending' AND attempts = %(attempt)s
RETURNING attempts;

-- name: retry_delivery
-- The claimed attempt failed: owed again after `delay` seconds, as `pending` (nothing was
-- delivered) or `unknown` (it may have been), never due after the delivery's maximum age; or
-- `failed` (given up, listed for an operator) when its attempts or its age are used up.
WITH d AS (
    SELECT order_id, kind,
           attempts >= %(max_attempts)s
               OR now() >= window_started_at + make_interval(secs => %(max_age)s::float8) AS exhausted,
           least(now() + make_interval(secs => %(delay)s::float8),
                 window_started_at + make_interval(secs => %(max_age)s::float8)) AS due
    FROM order_deliveries
    WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'sending' AND attempts = %(attempt)s
    FOR UPDATE
)
UPDATE order_deliveries o
SET state = CASE WHEN d.exhausted THEN 'failed' ELSE %(state)s END,
    maybe_delivered = o.maybe_delivered OR %(maybe_delivered)s,
    next_attempt_at = CASE WHEN d.exhausted THEN NULL ELSE d.due END,
    finished_at = CASE WHEN d.exhausted THEN now() END,
    last_error = CASE WHEN d.exhausted
                      THEN left('gave up after ' || o.attempts || ' attempts in '
                                || round(extract(epoch FROM now() - o.window_started_at)) || ' s; last error: '
                                || %(last_error)s, 1000)
                      ELSE %(last_error)s END
FROM d
WHERE o.order_id = d.order_id AND o.kind = d.kind
RETURNING o.state, o.last_error, greatest(0, extract(epoch FROM o.next_attempt_at - now()))::float8 AS retry_in;

-- name: resend_delivery
-- An operator sends a given-up delivery again: a new window, with its own attempts and age.
UPDATE order_deliveries
SET state = 'pending', attempts = 0, window_started_at = now(), next_attempt_at = now(),
    claimed_at = NULL, finished_at = NULL
WHERE order_id = %(order_id)s AND kind = %(kind)s AND state = 'failed'
RETURNING id, order_id, kind, state;

-- name: get_delivery
-- One delivery, as the operators' list shows it.
SELECT id, order_id, kind, state, attempts, resends, maybe_delivered, last_error, created_at,
       window_started_at, claimed_at, next_attempt_at, finished_at
FROM order_deliveries WHERE order_id = %(order_id)s AND kind = %(kind)s;

-- name: list_not_sent
-- The operators' list, newest first: deliveries not sent (one state of them, or all); by id.
SELECT id, order_id, kind, state, attempts, resends, maybe_delivered, last_error, created_at,
       window_started_at, claimed_at, next_attempt_at, finished_at
FROM order_deliveries
WHERE state <> 'sent'
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_sent
-- Delivered ones, newest first; by id.
SELECT id, order_id, kind, state, attempts, resends, maybe_delivered, last_error, created_at,
       window_started_at, claimed_at, next_attempt_at, finished_at
FROM order_deliveries
WHERE state = 'sent'
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: count_not_sent
-- Deliveries not sent, by state (the metric; `sent` grows with every order and is not counted).
SELECT state, count(*) AS n FROM order_deliveries WHERE state <> 'sent' GROUP BY state;

-- name: due_deliveries
-- Deliveries owed, due, and with no job waiting or running for them (their job gave up on a lost
-- database, failed on a bug, or was cancelled): the resume sweep's work. `grace` leaves alone
-- what a job is about to pick up.
SELECT order_id, kind, state, attempts, window_started_at, now() AS now
FROM order_deliveries d
WHERE state IN ('pending', 'unknown', 'sending')
  AND coalesce(next_attempt_at, claimed_at, created_at) < now() - make_interval(secs => %(grace)s::float8)
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.lock = 'delivery-' || d.kind || '-' || d.order_id AND j.status IN ('todo', 'doing'))
ORDER BY id
LIMIT %(limit)s
FOR UPDATE OF d SKIP LOCKED;
