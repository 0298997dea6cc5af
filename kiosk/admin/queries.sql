-- Queries over procrastinate's tables for the operators' surface (API, dashboard, metrics).
-- Jobs carry no timestamps of their own: times come from procrastinate_events.

-- name: queue_counts
-- Jobs per queue and status, each counted no further than its cap + 1 on kiosk_jobs_queue_status:
-- a full count reads a million-job table (75 ms); this reads at most the caps' worth of index.
SELECT q.name AS queue_name, s.status::text AS status,
       (SELECT count(*)
        FROM (SELECT 1 FROM procrastinate_jobs j
              WHERE j.queue_name = q.name AND j.status = s.status
              LIMIT CASE WHEN s.status = 'succeeded' THEN %(succeeded_cap)s ELSE %(cap)s END + 1) AS capped
       ) AS count
FROM unnest(%(queues)s::text[]) AS q(name)
CROSS JOIN unnest(%(statuses)s::procrastinate_job_status[]) AS s(status);

-- name: estimate_queue_count
-- The planner's estimate of a queue's jobs in a status (from the table's statistics, no scan)
EXPLAIN (FORMAT JSON)
SELECT 1 FROM procrastinate_jobs
WHERE queue_name = %(queue)s AND status = %(status)s::procrastinate_job_status;

-- name: queue_oldest_runnable
-- Per queue, the age in seconds of the oldest job that could run now: one walk of
-- kiosk_jobs_todo_queue_id per queue, whatever the backlog
SELECT q.name AS queue_name,
       extract(epoch FROM now() - greatest(
           (SELECT min(e.at) FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'deferred'),
           j.scheduled_at)) AS age_seconds
FROM unnest(%(queues)s::text[]) AS q(name)
CROSS JOIN LATERAL (
    SELECT id, scheduled_at
    FROM procrastinate_jobs
    WHERE queue_name = q.name AND status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
    ORDER BY id
    LIMIT 1
) AS j;

-- name: queue_throughput
-- Per queue, jobs finished (succeeded / failed) in the last 5 and 60 minutes
SELECT j.queue_name,
       count(*) FILTER (WHERE e.type = 'succeeded' AND e.at > now() - interval '5 minutes') AS succeeded_5m,
       count(*) FILTER (WHERE e.type = 'failed' AND e.at > now() - interval '5 minutes') AS failed_5m,
       count(*) FILTER (WHERE e.type = 'succeeded') AS succeeded_60m,
       count(*) FILTER (WHERE e.type = 'failed') AS failed_60m
FROM procrastinate_events e
JOIN procrastinate_jobs j ON j.id = e.job_id
WHERE e.type IN ('succeeded', 'failed') AND e.at > now() - interval '60 minutes'
GROUP BY j.queue_name;

-- name: throughput_series
-- Jobs finished per minute over the last N minutes (every minute, the current one included)
-- Two index-only range counts per minute on kiosk_events_type_at: no sort of the window's events,
-- 3x faster than a GROUP BY over a day of a million-job table (docs/dashboard.md).
SELECT m.minute,
       (SELECT count(*) FROM procrastinate_events e
        WHERE e.type = 'succeeded' AND e.at >= m.minute AND e.at < m.minute + interval '1 minute') AS succeeded,
       (SELECT count(*) FROM procrastinate_events e
        WHERE e.type = 'failed' AND e.at >= m.minute AND e.at < m.minute + interval '1 minute') AS failed
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1),
                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
ORDER BY m.minute;

-- name: job
-- One job with the times of its first and latest events
SELECT j.id, j.queue_name, j.task_name, j.status::text AS status, j.priority, j.lock,
       j.queueing_lock, j.args, j.scheduled_at, j.attempts, j.abort_requested, j.worker_id,
       (SELECT min(at) FROM procrastinate_events WHERE job_id = j.id AND type = 'deferred') AS deferred_at,
       (SELECT max(at) FROM procrastinate_events WHERE job_id = j.id) AS updated_at
FROM procrastinate_jobs j
WHERE j.id = %(job_id)s;

-- name: job_events
-- The event timeline of one job, oldest first
SELECT id, type::text AS type, at
FROM procrastinate_events
WHERE job_id = %(job_id)s
ORDER BY at, id;

-- name: first_job_deferred_since
-- The first job deferred at or after a time: turns a time range into an id range
-- One probe of kiosk_events_type_at, whatever the table size (min(job_id) read every later event).
-- Ids and times agree up to the overlap of concurrent deferring transactions.
SELECT (
    SELECT job_id
    FROM procrastinate_events
    WHERE type = 'deferred' AND at >= %(at)s
    ORDER BY at, job_id
    LIMIT 1
) AS job_id;

-- name: last_job_deferred_before
-- The last job deferred before a time; one probe of kiosk_events_type_at, as above
SELECT (
    SELECT job_id
    FROM procrastinate_events
    WHERE type = 'deferred' AND at < %(at)s
    ORDER BY at DESC, job_id DESC
    LIMIT 1
) AS job_id;

-- name: lock_job
-- Lock a job row before changing its state
SELECT id, status::text AS status, queueing_lock
FROM procrastinate_jobs
WHERE id = %(job_id)s
FOR UPDATE;

-- name: retry_failed_job
-- failed -> todo through procrastinate's own function (records a 'retried' event)
SELECT procrastinate_retry_job_v2(%(job_id)s, now(), NULL, NULL, NULL);

-- name: retry_finished_job
-- cancelled / aborted -> todo; procrastinate has no function for it, so record the event too
WITH job AS (
    UPDATE procrastinate_jobs
    SET status = 'todo', scheduled_at = NULL, abort_requested = false, worker_id = NULL
    WHERE id = %(job_id)s AND status IN ('cancelled', 'aborted')
    RETURNING id
)
INSERT INTO procrastinate_events (job_id, type)
SELECT id, 'retried' FROM job;

-- name: cancel_job
-- todo -> cancelled; doing -> abort requested (the task stops at its next check)
SELECT procrastinate_cancel_job_v1(%(job_id)s, %(abort)s, false) AS id;

-- name: workers
-- Workers with their heartbeat age and the jobs they hold, by id, keyset-paginated
SELECT w.id, w.last_heartbeat,
       extract(epoch FROM now() - w.last_heartbeat) AS heartbeat_age_seconds,
       coalesce(array_agg(j.id ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL), '{}') AS running_job_ids
FROM (SELECT id, last_heartbeat FROM procrastinate_workers
      WHERE %(after)s::bigint IS NULL OR id > %(after)s
      ORDER BY id
      LIMIT %(limit)s) AS w
LEFT JOIN procrastinate_jobs j ON j.worker_id = w.id AND j.status = 'doing'
GROUP BY w.id, w.last_heartbeat
ORDER BY w.id;

-- name: periodic_last_runs
-- The latest tick deferred for each periodic task
SELECT DISTINCT ON (task_name, periodic_id) task_name, periodic_id, defer_timestamp, job_id
FROM procrastinate_periodic_defers
ORDER BY task_name, periodic_id, defer_timestamp DESC;

-- name: list_jobs
-- Jobs newest first; {filters} is composed from the fixed clauses in kiosk/admin/jobs.py
SELECT j.id, j.queue_name, j.task_name, j.status::text AS status, j.priority, j.lock,
       j.queueing_lock, j.args, j.scheduled_at, j.attempts, j.abort_requested, j.worker_id,
       (SELECT min(at) FROM procrastinate_events WHERE job_id = j.id AND type = 'deferred') AS deferred_at,
       (SELECT max(at) FROM procrastinate_events WHERE job_id = j.id) AS updated_at
FROM procrastinate_jobs j
WHERE {filters}
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: select_job_ids
-- Ids of the jobs matching a filter, for bulk actions; {filters} as in list_jobs
SELECT j.id
FROM procrastinate_jobs j
WHERE {filters}
ORDER BY j.id
LIMIT %(limit)s;

-- name: count_jobs
-- How many jobs match a filter, counting at most %(cap)s; {filters} as in list_jobs
SELECT count(*) AS count
FROM (
    SELECT 1
    FROM procrastinate_jobs j
    WHERE {filters}
    LIMIT %(cap)s
) AS matching;

-- name: queue_names
-- Distinct queue names by skipping through procrastinate's queue_name index (no full scan)
WITH RECURSIVE names AS (
    (SELECT queue_name AS name FROM procrastinate_jobs ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT queue_name FROM procrastinate_jobs WHERE queue_name > names.name
            ORDER BY queue_name LIMIT 1)
    FROM names
    WHERE names.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL;

-- name: task_names
-- Distinct task names by skipping through the kiosk_jobs_task_id index
WITH RECURSIVE names AS (
    (SELECT task_name AS name FROM procrastinate_jobs ORDER BY task_name LIMIT 1)
    UNION ALL
    SELECT (SELECT task_name FROM procrastinate_jobs WHERE task_name > names.name
            ORDER BY task_name LIMIT 1)
    FROM names
    WHERE names.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL;

-- name: set_statement_timeout
-- Bound every statement of the current transaction (milliseconds), e.g. a text search on a big table
SELECT set_config('statement_timeout', %(ms)s, true);

-- name: prune_audit
-- Delete one batch of audit entries older than the retention limit, oldest first on admin_audit_at_idx;
-- ids as an array, probed on the primary key (`IN (subquery)` may scan the whole table every batch)
DELETE FROM admin_audit
 WHERE id = ANY(ARRAY(SELECT id FROM admin_audit WHERE at < %(before)s ORDER BY at LIMIT %(batch_size)s))
