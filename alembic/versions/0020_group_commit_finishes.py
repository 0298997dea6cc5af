"""jobs: finish many jobs and write their outcome rows in one transaction (group commit)

`kiosk_finish_jobs` is what a worker's `GroupCommitManager` (kiosk/jobs/finisher.py) sends once
per batch: the jobs that ended while the previous batch was being written. Each job is finished or
retried by procrastinate's own functions (`procrastinate_finish_job_v1`,
`procrastinate_retry_job_v2`), so its triggers, events and NOTIFYs are the released ones; the rows
of `job_outcomes` (one per attempt) go in with them, so a job is never finished without its row.

One job's refusal does not sink the others: a finish whose job is no longer `todo`/`doing` (the
stalled-job sweep took it back, an operator deleted it) and a retry that fails (its queueing lock is
taken by a newer waiting job, procrastinate#1543) are returned, with the error procrastinate would
have raised, and only their outcome row is left out. Rows are locked in id order (one query that
also reads their status), so two batches (or a batch and the sweep) never wait on each other in
opposite orders. Retries run in their own subtransaction (a unique violation would otherwise
abort the whole batch); finishes, checked under the row lock, need none.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE FUNCTION kiosk_finish_jobs(
            job_ids bigint[],
            -- 'succeeded', 'failed' or 'aborted' to finish the job; NULL to retry it
            end_statuses procrastinate_job_status[],
            delete_jobs boolean[],
            retry_ats timestamptz[],
            new_priorities integer[],
            new_queue_names character varying[],
            new_locks character varying[],
            -- job_outcomes rows, one JSON array each: job_id, attempt, task_name, queue_name,
            -- worker_id, worker_name, status, started_at (epoch seconds), duration_seconds,
            -- result (JSON text), error_type, error_message, traceback
            outcomes jsonb
        ) RETURNS TABLE (
            refused_id bigint, refused_sqlstate text, refused_message text,
            refused_constraint text
        )
            LANGUAGE plpgsql
        AS $$
        DECLARE
            _job record;
            _i integer;
            _found bigint[] := '{}';
            _refused bigint[] := '{}';
        BEGIN
            -- One query locks the batch's rows in id order and reads their status.
            FOR _job IN
                SELECT u.i, j.id, j.status
                  FROM procrastinate_jobs AS j
                  JOIN unnest(job_ids) WITH ORDINALITY AS u (id, i) ON u.id = j.id
                 ORDER BY j.id
                   FOR UPDATE OF j
            LOOP
                _found := _found || _job.id;
                _i := _job.i;
                IF end_statuses[_i] IS NOT NULL THEN
                    IF _job.status NOT IN ('todo', 'doing') THEN
                        refused_id := _job.id;
                        refused_sqlstate := 'P0001';
                        refused_message := format(
                            'Job was not found or not in "doing" or "todo" status (job id: %s)',
                            _job.id);
                        refused_constraint := NULL;
                        _refused := _refused || _job.id;
                        RETURN NEXT;
                        CONTINUE;
                    END IF;
                    PERFORM procrastinate_finish_job_v1(
                        _job.id, end_statuses[_i], delete_jobs[_i]);
                ELSE
                    BEGIN
                        PERFORM procrastinate_retry_job_v2(
                            _job.id, retry_ats[_i], new_priorities[_i],
                            new_queue_names[_i], new_locks[_i]);
                    EXCEPTION WHEN OTHERS THEN
                        GET STACKED DIAGNOSTICS refused_sqlstate = RETURNED_SQLSTATE,
                            refused_message = MESSAGE_TEXT,
                            refused_constraint = CONSTRAINT_NAME;
                        refused_id := _job.id;
                        _refused := _refused || _job.id;
                        RETURN NEXT;
                    END;
                END IF;
            END LOOP;
            -- Jobs that are gone (deleted meanwhile): refused as procrastinate refuses them.
            FOR _i IN 1 .. coalesce(array_length(job_ids, 1), 0) LOOP
                CONTINUE WHEN job_ids[_i] = ANY(_found);
                refused_id := job_ids[_i];
                refused_sqlstate := 'P0001';
                refused_message := format(
                    CASE WHEN end_statuses[_i] IS NULL
                         THEN 'Job was not found or has an invalid status to retry (job id: %s)'
                         ELSE 'Job was not found or not in "doing" or "todo" status (job id: %s)'
                    END, job_ids[_i]);
                refused_constraint := NULL;
                _refused := _refused || job_ids[_i];
                RETURN NEXT;
            END LOOP;

            INSERT INTO job_outcomes (
                job_id, attempt, task_name, queue_name, worker_id, worker_name, status,
                started_at, ended_at, duration_seconds, result, error_type, error_message,
                traceback
            )
            SELECT (o->>0)::bigint, (o->>1)::integer, o->>2, o->>3, (o->>4)::bigint, o->>5,
                   o->>6, to_timestamp((o->>7)::double precision),
                   to_timestamp((o->>7)::double precision + (o->>8)::double precision),
                   (o->>8)::double precision, (o->>9)::jsonb, o->>10, o->>11, o->>12
              FROM jsonb_array_elements(coalesce(outcomes, '[]')) AS o
             WHERE (o->>0)::bigint <> ALL(_refused);
        END;
        $$;
        """
    )


def downgrade() -> None:
    run_sql(
        "DROP FUNCTION IF EXISTS kiosk_finish_jobs(bigint[], procrastinate_job_status[], "
        "boolean[], timestamptz[], integer[], character varying[], character varying[], jsonb);"
    )
