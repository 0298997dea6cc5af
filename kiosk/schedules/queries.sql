-- name: insert_schedule
-- Store a validated schedule; its dispatcher cursor starts now, so no tick before creation runs.
INSERT INTO schedules (name, cron, timezone, method, url, headers, secret_headers, body_bytes,
                       secrets, timeout_seconds, max_attempts, active)
VALUES (%(name)s, %(cron)s, %(timezone)s, %(method)s, %(url)s, %(headers)s, %(secret_headers)s,
        %(body_bytes)s, %(secrets)s, %(timeout_seconds)s, %(max_attempts)s, %(active)s)
RETURNING *;

-- name: update_schedule
-- Replace every editable field; a new cron, zone or activation restarts the cursor at now.
UPDATE schedules
SET name = %(name)s, cron = %(cron)s, timezone = %(timezone)s, method = %(method)s,
    url = %(url)s, headers = %(headers)s, secret_headers = %(secret_headers)s,
    body_bytes = %(body_bytes)s, secrets = %(secrets)s, timeout_seconds = %(timeout_seconds)s,
    max_attempts = %(max_attempts)s, active = %(active)s,
    dispatched_until = CASE WHEN %(reset_cursor)s THEN now() ELSE dispatched_until END,
    updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: get_schedule
-- One schedule by id.
SELECT * FROM schedules WHERE id = %(id)s;

-- name: lock_schedule
-- One schedule by id, locked until the transaction ends: edits and dispatches take turns.
SELECT * FROM schedules WHERE id = %(id)s FOR UPDATE;

-- name: list_schedules
-- A page of schedules, oldest first, after the keyset cursor (an id).
SELECT * FROM schedules
WHERE %(after_id)s::bigint IS NULL OR id > %(after_id)s::bigint
ORDER BY id
LIMIT %(limit)s;

-- name: sealed_schedules
-- Schedules holding encrypted secrets.
SELECT id, secrets FROM schedules WHERE secrets IS NOT NULL ORDER BY id;

-- name: reseal
-- Store the same secrets under another key, only if nobody changed them meanwhile.
UPDATE schedules SET secrets = %(new)s
WHERE id = %(id)s AND secrets = %(old)s
RETURNING id;

-- name: last_runs
-- The latest run (due or past) of each given schedule, for listings.
SELECT DISTINCT ON (schedule_id) *
FROM schedule_runs
WHERE schedule_id = ANY(%(ids)s) AND (scheduled_for <= now() OR outcome <> 'pending')
ORDER BY schedule_id, scheduled_for DESC, id DESC;

-- name: delete_schedule
-- Remove a schedule; its runs go with it (ON DELETE CASCADE).
DELETE FROM schedules WHERE id = %(id)s RETURNING id;

-- name: waiting_job_ids
-- Jobs of the schedule's runs that have not finished, to cancel when they must not run.
SELECT job_id FROM schedule_runs
WHERE schedule_id = %(schedule_id)s AND job_id IS NOT NULL
  AND outcome IN ('pending', 'retrying');

-- name: delete_pending_cron_runs
-- Drop cron runs that have not started (the horizon ahead); returns their jobs to cancel.
DELETE FROM schedule_runs
WHERE schedule_id = %(schedule_id)s AND trigger = 'cron' AND outcome = 'pending' AND attempts = 0
RETURNING job_id;

-- name: schedules_to_dispatch
-- Active schedules whose cursor is short of the horizon.
SELECT id FROM schedules
WHERE active AND dispatched_until < now() + make_interval(secs => %(horizon_seconds)s)
ORDER BY id;

-- name: insert_cron_runs
-- One pending run per tick; a tick that already has its run is left alone (never twice).
INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for)
SELECT %(schedule_id)s, 'cron', tick FROM unnest(%(ticks)s::timestamptz[]) AS tick
ON CONFLICT (schedule_id, scheduled_for) WHERE trigger = 'cron' DO NOTHING
RETURNING id, scheduled_for;

-- name: insert_skipped_runs
-- Ticks missed beyond the catch-up limit, recorded as skipped.
INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for, outcome, finished_at, error)
SELECT %(schedule_id)s, 'cron', tick, 'skipped', now(), %(error)s
FROM unnest(%(ticks)s::timestamptz[]) AS tick
ON CONFLICT (schedule_id, scheduled_for) WHERE trigger = 'cron' DO NOTHING;

-- name: set_job_ids
-- Remember which procrastinate job executes each run.
UPDATE schedule_runs AS r SET job_id = j.job_id
FROM unnest(%(run_ids)s::bigint[], %(job_ids)s::bigint[]) AS j (run_id, job_id)
WHERE r.id = j.run_id;

-- name: advance_cursor
-- Every tick up to this instant has been dispatched.
UPDATE schedules SET dispatched_until = %(until)s WHERE id = %(id)s;

-- name: insert_manual_run
-- A "run now" run, due immediately.
INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for)
VALUES (%(schedule_id)s, 'manual', now())
RETURNING *;

-- name: get_run
-- One run by id.
SELECT * FROM schedule_runs WHERE id = %(id)s;

-- name: list_runs
-- History of a schedule, newest tick first, after the keyset cursor; upcoming ticks are left out.
SELECT * FROM schedule_runs
WHERE schedule_id = %(schedule_id)s
  AND (scheduled_for <= now() OR outcome <> 'pending')
  AND (%(before_at)s::timestamptz IS NULL
       OR (scheduled_for, id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
ORDER BY scheduled_for DESC, id DESC
LIMIT %(limit)s;

-- name: claim_run
-- Start an attempt: the run must still be unfinished, and a cron run that has not started yet
-- needs its schedule active. Returns the request to perform.
UPDATE schedule_runs AS r
SET outcome = 'running', attempts = r.attempts + 1, started_at = coalesce(r.started_at, now())
FROM schedules AS s
WHERE r.id = %(run_id)s AND s.id = r.schedule_id
  AND r.outcome IN ('pending', 'running', 'retrying')
  AND (s.active OR r.trigger = 'manual' OR r.attempts > 0)
RETURNING r.id AS run_id, r.schedule_id, r.trigger, r.scheduled_for, r.attempts,
          s.method, s.url, s.headers, s.secrets, s.timeout_seconds, s.max_attempts;

-- name: record_attempt
-- Store the result of one attempt; finished_at only when the outcome is final.
UPDATE schedule_runs
SET outcome = %(outcome)s, http_status = %(http_status)s, duration_ms = %(duration_ms)s,
    response_excerpt = %(response_excerpt)s, error = %(error)s,
    finished_at = CASE WHEN %(final)s THEN now() END,
    attempt_log = attempt_log || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'at', now(), 'outcome', %(outcome)s::text,
        'http_status', %(http_status)s::integer, 'duration_ms', %(duration_ms)s::integer,
        'error', %(error)s::text))
WHERE id = %(run_id)s
RETURNING id;

-- name: prune_runs
-- Delete one batch of runs scheduled before the retention limit (kiosk/retention.py), oldest first
-- on schedule_runs_scheduled_for_idx; a run whose job still waits or runs stays. The ids go as an
-- array, probed on the primary key (`IN (subquery)` may scan the whole table every batch).
DELETE FROM schedule_runs
 WHERE id = ANY(ARRAY(
       SELECT run.id
         FROM schedule_runs AS run
        WHERE run.scheduled_for < %(before)s
          AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS job
                           WHERE job.id = run.job_id AND job.status IN ('todo', 'doing'))
        ORDER BY run.scheduled_for
        LIMIT %(batch_size)s
          FOR UPDATE SKIP LOCKED))
