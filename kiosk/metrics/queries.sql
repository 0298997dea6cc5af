-- Figures computed from the database at scrape time (the rest comes from kiosk.admin).

-- name: outcomes_head
-- The newest job outcome whose attempt ended a few seconds ago: outcomes up to it are settled
SELECT coalesce(max(id), 0) AS id FROM job_outcomes WHERE ended_at < now() - interval '5 seconds';

-- name: outcome_buckets
-- New job outcomes since the last scrape, per task and status, counted per duration bucket
SELECT task_name, status, width_bucket(duration_seconds, %(bounds)s::float8[]) AS bucket,
       count(*) AS n, sum(duration_seconds) AS total
FROM job_outcomes
WHERE id > %(after)s AND id <= %(until)s
GROUP BY task_name, status, bucket;

-- name: inbox_backlog
-- Accepted notifications whose processing job has not finished yet
SELECT count(*) AS n FROM webhook_inbox WHERE state = 'received';

-- name: events_head
-- The newest procrastinate event written a few seconds ago: events up to it are settled (a short
-- backward walk of the primary key). `scheduled` events are left out: their `at` is the job's
-- scheduled time, not when they were written.
SELECT coalesce(max(id), 0) AS id FROM procrastinate_events
 WHERE at < now() - interval '5 seconds' AND type <> 'scheduled';

-- name: wait_buckets
-- Job starts among new events, per queue and task, counted per wait bucket. A start's wait runs
-- from when its job could start: the event that made it `todo` (deferred, deferred_for_retry,
-- retried) or, when later, its scheduled time then (the last `scheduled` event since the
-- previous start; procrastinate writes it with `at` = scheduled_at, before the status event).
-- Two probes of the job's few events per start (procrastinate_events_job_id_fkey_v1).
WITH starts AS (
    SELECT s.id, s.job_id, s.at
      FROM procrastinate_events AS s
     WHERE s.id > %(after)s AND s.id <= %(until)s AND s.type = 'started'
), waits AS (
    SELECT j.queue_name, j.task_name,
           greatest(0, extract(epoch FROM starts.at - greatest(phase.became_todo, phase.scheduled_for))
           )::float8 AS wait
      FROM starts
      JOIN procrastinate_jobs AS j ON j.id = starts.job_id
     CROSS JOIN LATERAL (
           SELECT coalesce(max(e.id) FILTER (WHERE e.type = 'started'), 0) AS previous_start
             FROM procrastinate_events AS e
            WHERE e.job_id = starts.job_id AND e.id < starts.id
     ) AS previous
     CROSS JOIN LATERAL (
           SELECT max(e.at) FILTER (WHERE e.type IN ('deferred', 'deferred_for_retry', 'retried'))
                      AS became_todo,
                  (array_agg(e.at ORDER BY e.id DESC) FILTER (WHERE e.type = 'scheduled'))[1]
                      AS scheduled_for
             FROM procrastinate_events AS e
            WHERE e.job_id = starts.job_id AND e.id > previous.previous_start AND e.id < starts.id
     ) AS phase
     WHERE phase.became_todo IS NOT NULL
)
SELECT queue_name, task_name, width_bucket(wait, %(bounds)s::float8[]) AS bucket,
       count(*) AS n, sum(wait) AS total
  FROM waits
 GROUP BY queue_name, task_name, bucket;

-- name: stalled_jobs
-- Running jobs whose worker is gone or has not sent a heartbeat for `after` seconds, per queue:
-- the stalled-job sweep (periodic.py) puts them back to todo; if they stay, it is not running
SELECT j.queue_name, count(*) AS n
  FROM procrastinate_jobs AS j
  LEFT JOIN procrastinate_workers AS w ON w.id = j.worker_id
 WHERE j.status = 'doing'
   AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => %(after)s))
 GROUP BY j.queue_name;

-- name: failing_schedules
-- Active schedules whose latest finished run did not succeed (one probe of schedule_runs_history
-- per schedule, past the runs created ahead)
SELECT count(*) AS n
  FROM schedules AS s
 CROSS JOIN LATERAL (
       SELECT r.outcome FROM schedule_runs AS r
        WHERE r.schedule_id = s.id AND r.outcome IN ('success', 'failed', 'timeout', 'error', 'refused')
        ORDER BY r.scheduled_for DESC, r.id DESC
        LIMIT 1
 ) AS last
 WHERE s.active AND last.outcome <> 'success';
