-- Progress and results reported by long jobs while they run.

-- name: report_progress
-- Upsert a job's progress; never moves the percentage backwards
INSERT INTO job_progress (job_id, percent, message)
VALUES (%(job_id)s, %(percent)s, %(message)s)
ON CONFLICT (job_id) DO UPDATE
SET percent = greatest(job_progress.percent, excluded.percent),
    message = excluded.message,
    updated_at = now();

-- name: set_result
-- Store a job's result (JSON) and mark it complete
INSERT INTO job_progress (job_id, percent, message, result)
VALUES (%(job_id)s, 100, %(message)s, %(result)s)
ON CONFLICT (job_id) DO UPDATE
SET percent = 100, message = excluded.message, result = excluded.result, updated_at = now();

-- name: get_progress
-- A job's latest progress and result
SELECT job_id, percent, message, result, updated_at
FROM job_progress
WHERE job_id = %(job_id)s;
