-- name: finish_jobs
-- Finish or retry a batch of jobs and write their outcome rows in one transaction (finisher.py);
-- returns the refused jobs only, each with the error procrastinate would have raised.
SELECT refused_id, refused_sqlstate, refused_message, refused_constraint
  FROM kiosk_finish_jobs(
       %(job_ids)s::bigint[], %(end_statuses)s::text[]::procrastinate_job_status[],
       %(delete_jobs)s::boolean[], %(retry_ats)s::timestamptz[], %(new_priorities)s::integer[],
       %(new_queue_names)s::text[]::character varying[], %(new_locks)s::text[]::character varying[],
       %(outcomes)s::jsonb)

-- name: insert_lost_outcome
-- Record the attempt of a stalled job whose worker stopped sending heartbeats mid-job.
INSERT INTO job_outcomes (
    job_id, attempt, task_name, queue_name, worker_id, status, started_at, ended_at,
    duration_seconds, error_type, error_message
)
SELECT %(job_id)s, %(attempt)s, %(task_name)s, %(queue_name)s, %(worker_id)s, 'worker_lost',
       coalesce(started.at, now()), now(),
       extract(epoch FROM now() - coalesce(started.at, now()))::double precision,
       'WorkerLost', %(error_message)s
  FROM (SELECT max(at) AS at FROM procrastinate_events
         WHERE job_id = %(job_id)s AND type = 'started') AS started

-- name: outcomes_for_job
-- Every recorded attempt of one job, first attempt first.
SELECT id, job_id, attempt, task_name, queue_name, worker_id, worker_name, status, started_at,
       ended_at, duration_seconds, result, error_type, error_message, traceback
  FROM job_outcomes
 WHERE job_id = %(job_id)s
 ORDER BY attempt, id

-- name: last_errors
-- The last attempt that did not succeed of each given job (a page of failed jobs), no traceback.
-- One backward probe of job_outcomes_job_idx per job, whatever the number of failures stored
-- (job_id = ANY(...) let the planner scan every failure through job_outcomes_failures_idx).
SELECT o.job_id, o.attempt, o.status, o.ended_at, o.error_type, o.error_message
  FROM unnest(%(job_ids)s::bigint[]) AS wanted (job_id)
 CROSS JOIN LATERAL (
       SELECT job_id, attempt, status, ended_at, error_type, error_message
         FROM job_outcomes
        WHERE job_id = wanted.job_id AND status <> 'succeeded'
        ORDER BY attempt DESC, id DESC
        LIMIT 1
 ) AS o

-- name: prune_finished_jobs
-- Delete one batch of finished jobs (and their outcomes) whose last event is past its retention.
WITH doomed AS (
    SELECT job.id
      FROM procrastinate_jobs AS job
     WHERE job.id > %(after_id)s
       AND job.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
       AND (SELECT max(event.at) FROM procrastinate_events AS event WHERE event.job_id = job.id)
           < CASE job.status WHEN 'succeeded' THEN %(succeeded_before)s::timestamptz
                             ELSE %(failed_before)s::timestamptz END
     ORDER BY job.id
     LIMIT %(batch_size)s
       FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM procrastinate_jobs AS job USING doomed WHERE job.id = doomed.id RETURNING job.id
), deleted_outcomes AS (
    DELETE FROM job_outcomes AS outcome USING deleted WHERE outcome.job_id = deleted.id
)
SELECT count(*) AS deleted, max(id) AS last_id FROM deleted

-- name: prune_old_outcomes
-- Delete one batch of outcomes older than KIOSK_RETAIN_JOB_OUTCOMES_DAYS (their job is gone or kept);
-- ids as an array, probed on the primary key (`IN (subquery)` may scan the whole table every batch)
DELETE FROM job_outcomes
 WHERE id = ANY(ARRAY(SELECT id FROM job_outcomes WHERE ended_at < %(before)s LIMIT %(batch_size)s))

-- name: hold_waiting_job
-- The job waiting with a queueing lock, locked until the caller's transaction ends (kiosk.queue.defer)
SELECT id FROM procrastinate_jobs
WHERE queueing_lock = %(queueing_lock)s AND status = 'todo'
FOR KEY SHARE;

-- name: release_queueing_lock
-- Drop a running job's queueing lock before it goes back to todo (procrastinate issue #1543)
UPDATE procrastinate_jobs SET queueing_lock = NULL WHERE id = %(job_id)s AND status = 'doing';

-- name: fetch_jobs_with
-- The WITH list of a fetch of up to {count} jobs, as `fetched` (composed by fetcher.py into
-- fetch_jobs and finish_and_fetch_jobs). {count} is an integer literal, so that the statement's
-- prepared plan walks the priority index: a LIMIT parameter makes a generic plan sort every waiting
-- job. Without a pause, rate limit or cap on these queues it is procrastinate_fetch_job_v2's fetch
-- for several jobs (the `lock` rule as in migration 0019); with one, kiosk_fetch_jobs enforces them.
controlled AS (
    SELECT EXISTS (
        SELECT 1 FROM kiosk_queue_controls AS c
        WHERE (c.paused OR c.max_running IS NOT NULL OR c.max_per_second IS NOT NULL)
          AND (%(queues)s::varchar[] IS NULL OR c.queue = ANY (%(queues)s::varchar[]))
    ) AS yes
),
candidate AS (
    SELECT jobs.id
      FROM procrastinate_jobs AS jobs
     WHERE NOT (SELECT yes FROM controlled)
       AND jobs.status = 'todo'
       AND (%(queues)s::varchar[] IS NULL OR jobs.queue_name = ANY (%(queues)s::varchar[]))
       AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
       -- A job with no lock never looks for others (written as an OR, not inside the NOT
       -- EXISTS: with a stale estimate of waiting jobs the planner otherwise joins every
       -- candidate against a whole index of locks).
       AND (jobs.lock IS NULL OR NOT EXISTS (
           SELECT 1
             FROM procrastinate_jobs AS other_jobs
            WHERE other_jobs.lock = jobs.lock
              AND (other_jobs.status = 'doing'
                   OR (other_jobs.status = 'todo'
                       AND (other_jobs.priority > jobs.priority
                            OR (other_jobs.priority = jobs.priority
                                AND other_jobs.id < jobs.id))))
       ))
     ORDER BY jobs.priority DESC, jobs.id ASC
     LIMIT {count}
       FOR UPDATE OF jobs SKIP LOCKED
),
taken AS (
    UPDATE procrastinate_jobs AS j
       SET status = 'doing', worker_id = %(worker_id)s
      FROM candidate
     WHERE j.id = candidate.id
    RETURNING j.id, j.status, j.task_name, j.priority, j.lock, j.queueing_lock, j.args,
              j.scheduled_at, j.queue_name, j.attempts, j.abort_requested, j.worker_id
),
fetched AS (
    SELECT taken.*, false AS rate_limited, NULL::text[] AS capped_queues,
           NULL::double precision AS rate_wake_in
      FROM taken
    UNION ALL
    SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at, queue_name,
           attempts, abort_requested, worker_id, rate_limited, capped_queues, rate_wake_in
      FROM kiosk_fetch_jobs(%(queues)s::varchar[], %(worker_id)s, {count})
     WHERE (SELECT yes FROM controlled)
)

-- name: fetch_jobs
-- Take up to {count} jobs in one round trip, the queue controls enforced (a row of NULL job
-- columns carries the limits' wake-up when no job was taken).
WITH {fetch_with}
SELECT * FROM fetched

-- name: finish_and_fetch_jobs
-- A finish batch (as finish_jobs) that also takes up to {count} jobs for the slots it frees, in its
-- one transaction: the refused finishes (refused_id set) and the jobs taken (id set).
WITH finished AS (
    SELECT refused_id, refused_sqlstate, refused_message, refused_constraint
      FROM kiosk_finish_jobs(
           %(job_ids)s::bigint[], %(end_statuses)s::text[]::procrastinate_job_status[],
           %(delete_jobs)s::boolean[], %(retry_ats)s::timestamptz[],
           %(new_priorities)s::integer[], %(new_queue_names)s::text[]::character varying[],
           %(new_locks)s::text[]::character varying[], %(outcomes)s::jsonb)
),
{fetch_with}
SELECT fetched.*, NULL::bigint AS refused_id, NULL::text AS refused_sqlstate,
       NULL::text AS refused_message, NULL::text AS refused_constraint
  FROM fetched
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       finished.*
  FROM finished

-- name: release_jobs
-- Put jobs a stopping worker fetched but never started back in `todo`; return their ids.
SELECT kiosk_release_jobs(%(job_ids)s::bigint[], %(worker_id)s) AS id

-- name: restamp_starts
-- A slow fetch: count its rate-limited jobs from now in their queues' windows, before they start.
SELECT kiosk_restamp_starts(%(job_ids)s::bigint[])
