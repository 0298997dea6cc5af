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
