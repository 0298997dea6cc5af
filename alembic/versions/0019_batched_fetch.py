"""jobs: batched fetch that enforces the queue controls (pause, rate limit, cap) fleet-wide

`kiosk_fetch_jobs(queues, worker_id, n)` takes up to n jobs in one round trip with the semantics
of procrastinate_fetch_job_v2 (todo, due, queue filter, `lock` rule, priority then id, SKIP
LOCKED, then `doing` with the worker id; procrastinate's triggers record the events). Paused
queues are never taken; limited queues (max_running, max_per_second) lock their control rows so
their fetches serialize fleet-wide, and take at most their budget. `kiosk_release_jobs` puts
fetched jobs that never started back in `todo` (a worker stopping). A trigger on
kiosk_queue_controls sends procrastinate's own `job_inserted` wake-up, so a resume or a raised
limit wakes every worker at once. docs/workers.md, "How queue controls are enforced".

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# The `lock` rule of procrastinate_fetch_job_v2, verbatim: no job whose lock has a running job or
# an earlier (or higher-priority) waiting job.
_LOCK_RULE = """
                NOT EXISTS (
                    SELECT 1
                        FROM procrastinate_jobs AS other_jobs
                        WHERE
                            jobs.lock IS NOT NULL
                            AND other_jobs.lock = jobs.lock
                            AND (
                                other_jobs.status = 'doing'
                                OR (
                                    other_jobs.status = 'todo'
                                    AND (
                                        other_jobs.priority > jobs.priority
                                        OR (
                                            other_jobs.priority = jobs.priority
                                            AND other_jobs.id < jobs.id
                                        )
                                    )
                                )
                            )
                )
"""

_RETURNED = """
        j.id, j.status, j.task_name, j.priority, j.lock, j.queueing_lock, j.args,
        j.scheduled_at, j.queue_name, j.attempts, j.abort_requested, j.worker_id
"""

UPGRADE = f"""
-- Which job each start is: a job given back unstarted leaves the window, a late one is restamped.
ALTER TABLE kiosk_queue_starts ADD COLUMN job_id bigint;

-- One short index walk per queue for limited and paused queues (instead of a scan of a backlog).
CREATE INDEX kiosk_jobs_todo_queue_priority_id
    ON procrastinate_jobs (queue_name, priority DESC, id) WHERE status = 'todo';

CREATE FUNCTION kiosk_rate_starts(max_per_second double precision)
    RETURNS integer LANGUAGE sql IMMUTABLE
AS $$
    SELECT greatest(1, floor(max_per_second))::integer
$$;

-- The window of a rate limit: floor(rate) starts (1 below 1/s) per max(1 s, starts / rate), plus
-- a guard of 0.2 s: the time between a fetch and the job's start in its task varies (by up to
-- 0.2 s on a busy machine), and a second of starts must never hold more than the rate.
CREATE FUNCTION kiosk_rate_window(max_per_second double precision)
    RETURNS interval LANGUAGE sql IMMUTABLE
AS $$
    SELECT make_interval(secs => greatest(1.0, kiosk_rate_starts(max_per_second) / max_per_second)
                                 + 0.2)
$$;

CREATE FUNCTION kiosk_fetch_jobs(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_count integer
)
    RETURNS TABLE (
        id bigint, status procrastinate_job_status, task_name character varying,
        priority integer, lock text, queueing_lock text, args jsonb,
        scheduled_at timestamp with time zone, queue_name character varying, attempts integer,
        abort_requested boolean, worker_id bigint,
        -- the job's queue has a rate limit (the worker gives it back if the round trip was slow)
        rate_limited boolean,
        -- the same on every row; a row of NULL job columns carries them when no job was taken
        capped_queues text[], rate_wake_in double precision
    )
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    _queues character varying[];
    _now timestamptz;
BEGIN
    -- No control on these queues: procrastinate's fetch, n jobs at a time, no lock on controls.
    IF NOT EXISTS (
        SELECT 1 FROM kiosk_queue_controls AS c
        WHERE (c.paused OR c.max_running IS NOT NULL OR c.max_per_second IS NOT NULL)
          AND (target_queue_names IS NULL OR c.queue = ANY (target_queue_names))
    ) THEN
        RETURN QUERY
        WITH candidate AS (
            SELECT jobs.id
                FROM procrastinate_jobs AS jobs
                WHERE {_LOCK_RULE}
                    AND jobs.status = 'todo'
                    AND (target_queue_names IS NULL OR jobs.queue_name = ANY (target_queue_names))
                    AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
                ORDER BY jobs.priority DESC, jobs.id ASC
                LIMIT p_count
                FOR UPDATE OF jobs SKIP LOCKED
        )
        UPDATE procrastinate_jobs AS j
            SET status = 'doing', worker_id = p_worker_id
            FROM candidate
            WHERE j.id = candidate.id
            RETURNING {_RETURNED}, false, NULL::text[], NULL::double precision;
        RETURN;
    END IF;

    -- Limited queues: their control rows are locked (in name order) until this fetch commits, so
    -- fetches of a limited queue run one at a time across the fleet and each sees the last one's
    -- starts. Unlimited and paused queues take no lock.
    PERFORM 1 FROM kiosk_queue_controls AS c
        WHERE NOT c.paused
          AND (c.max_running IS NOT NULL OR c.max_per_second IS NOT NULL)
          AND (target_queue_names IS NULL OR c.queue = ANY (target_queue_names))
        ORDER BY c.queue
        FOR UPDATE;
    -- The time after the wait for the lock (now() is the transaction's start).
    _now := clock_timestamp();

    DELETE FROM kiosk_queue_starts AS s
        USING kiosk_queue_controls AS c
        WHERE c.queue = s.queue AND c.max_per_second IS NOT NULL AND NOT c.paused
          AND (target_queue_names IS NULL OR c.queue = ANY (target_queue_names))
          AND s.started_at <= _now - kiosk_rate_window(c.max_per_second);

    IF target_queue_names IS NULL THEN
        -- The queues with waiting jobs: a skip scan, one index probe per queue.
        WITH RECURSIVE queues AS (
            (SELECT jobs.queue_name FROM procrastinate_jobs AS jobs
                WHERE jobs.status = 'todo' ORDER BY jobs.queue_name LIMIT 1)
            UNION ALL
            SELECT (SELECT jobs.queue_name FROM procrastinate_jobs AS jobs
                        WHERE jobs.status = 'todo' AND jobs.queue_name > queues.queue_name
                        ORDER BY jobs.queue_name LIMIT 1)
                FROM queues WHERE queues.queue_name IS NOT NULL
        )
        SELECT array_agg(queues.queue_name) INTO _queues
            FROM queues WHERE queues.queue_name IS NOT NULL;
    ELSE
        _queues := target_queue_names;
    END IF;

    RETURN QUERY
    WITH budgets AS (
        SELECT q.name AS queue_name,
               CASE WHEN c.max_running IS NOT NULL THEN c.max_running - (
                   SELECT count(*) FROM procrastinate_jobs AS d
                    WHERE d.queue_name = q.name AND d.status = 'doing'
                      AND d.worker_id IS NOT NULL
               ) END AS cap_left,
               CASE WHEN c.max_per_second IS NOT NULL
                    THEN kiosk_rate_starts(c.max_per_second) - w.starts END AS rate_left,
               w.first_start,
               kiosk_rate_window(c.max_per_second) AS rate_window
        FROM unnest(_queues) AS q(name)
        LEFT JOIN kiosk_queue_controls AS c ON c.queue = q.name
        LEFT JOIN LATERAL (
            SELECT count(*)::integer AS starts, min(s.started_at) AS first_start
              FROM kiosk_queue_starts AS s
             WHERE c.max_per_second IS NOT NULL AND s.queue = q.name
               AND s.started_at > _now - kiosk_rate_window(c.max_per_second)
        ) AS w ON true
        WHERE NOT coalesce(c.paused, false)
    ),
    picked AS (
        SELECT p.id, p.priority
        FROM budgets AS b
        CROSS JOIN LATERAL (
            SELECT jobs.id, jobs.priority
                FROM procrastinate_jobs AS jobs
                WHERE jobs.queue_name = b.queue_name
                    AND jobs.status = 'todo'
                    AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
                    AND {_LOCK_RULE}
                ORDER BY jobs.priority DESC, jobs.id ASC
                LIMIT greatest(0, least(p_count, b.cap_left, b.rate_left))
                FOR UPDATE OF jobs SKIP LOCKED
        ) AS p
    ),
    chosen AS (
        SELECT picked.id FROM picked ORDER BY picked.priority DESC, picked.id ASC LIMIT p_count
    ),
    taken AS (
        UPDATE procrastinate_jobs AS j
            SET status = 'doing', worker_id = p_worker_id
            FROM chosen
            WHERE j.id = chosen.id
            RETURNING {_RETURNED}
    ),
    per_queue AS (
        SELECT taken.queue_name, count(*)::integer AS n FROM taken GROUP BY taken.queue_name
    ),
    recorded AS (
        INSERT INTO kiosk_queue_starts (queue, started_at, job_id)
        SELECT taken.queue_name, _now, taken.id
            FROM taken JOIN budgets AS b ON b.queue_name = taken.queue_name
            WHERE b.rate_left IS NOT NULL
    ),
    wake AS (
        SELECT
            -- Every capped queue: a worker that finishes one of their jobs fetches again at once
            -- (the cap may have held jobs back on any worker, this one included).
            array_agg(b.queue_name::text) FILTER (WHERE b.cap_left IS NOT NULL) AS capped,
            min(extract(epoch FROM least(b.first_start, CASE WHEN pq.n > 0 THEN _now END)
                                   + b.rate_window - clock_timestamp())) FILTER (
                WHERE b.rate_left - coalesce(pq.n, 0) <= 0
            )::double precision AS wake_in
        FROM budgets AS b LEFT JOIN per_queue AS pq ON pq.queue_name = b.queue_name
    )
    SELECT taken.*, b.rate_left IS NOT NULL, wake.capped, wake.wake_in
        FROM taken JOIN budgets AS b ON b.queue_name = taken.queue_name CROSS JOIN wake
    UNION ALL
    SELECT NULL::bigint, NULL::procrastinate_job_status, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, wake.capped, wake.wake_in
        FROM wake
        WHERE NOT EXISTS (SELECT 1 FROM taken)
          AND (wake.capped IS NOT NULL OR wake.wake_in IS NOT NULL);
END;
$$;

-- Jobs a stopping worker fetched but never started: back to `todo` (attempts unchanged) and a
-- wake-up for the other workers. A newer job waiting with the same queueing lock keeps it: the
-- returned job drops its own (procrastinate issue #1543, as kiosk's stalled-job sweep does).
CREATE FUNCTION kiosk_release_jobs(p_job_ids bigint[], p_worker_id bigint)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    _ids bigint[];
    _queues character varying[];
    _queue character varying;
BEGIN
    WITH released AS (
        UPDATE procrastinate_jobs AS j
            SET status = 'todo', worker_id = NULL,
                queueing_lock = CASE WHEN EXISTS (
                    SELECT 1 FROM procrastinate_jobs AS o
                    WHERE o.queueing_lock = j.queueing_lock AND o.status = 'todo'
                ) THEN NULL ELSE j.queueing_lock END
            WHERE j.id = ANY (p_job_ids) AND j.status = 'doing' AND j.worker_id = p_worker_id
            RETURNING j.id, j.queue_name
    )
    SELECT array_agg(released.id), array_agg(DISTINCT released.queue_name) INTO _ids, _queues
        FROM released;
    IF _ids IS NULL THEN
        RETURN;
    END IF;
    -- This attempt never started: its start leaves the window (an earlier attempt's stays).
    DELETE FROM kiosk_queue_starts
        WHERE ctid IN (
            SELECT DISTINCT ON (s.job_id) s.ctid FROM kiosk_queue_starts AS s
                WHERE s.job_id = ANY (_ids) ORDER BY s.job_id, s.started_at DESC
        );
    FOREACH _queue IN ARRAY _queues LOOP
        PERFORM pg_notify('procrastinate_queue_v1#' || _queue,
                          '{{"type": "job_inserted", "job_id": null}}');
    END LOOP;
    PERFORM pg_notify('procrastinate_any_queue_v1', '{{"type": "job_inserted", "job_id": null}}');
    RETURN QUERY SELECT unnest(_ids);
END;
$$;

-- A worker whose fetch round trip was slow starts its rate-limited jobs later than the window
-- counted them from: their starts move to now, before they start (docs/workers.md).
CREATE FUNCTION kiosk_restamp_starts(p_job_ids bigint[])
    RETURNS void
    LANGUAGE sql
AS $$
    UPDATE kiosk_queue_starts SET started_at = clock_timestamp() WHERE job_id = ANY (p_job_ids)
$$;

-- A pause lifted or a limit raised wakes every worker listening on that queue at once
-- (procrastinate's own wake-up, the one an insert sends). A rate limit removed forgets its window.
CREATE FUNCTION kiosk_queue_controls_changed()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _queue text;
BEGIN
    FOR _queue IN
        SELECT DISTINCT q FROM unnest(ARRAY[
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.queue END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.queue END
        ]) AS q WHERE q IS NOT NULL
    LOOP
        PERFORM pg_notify('procrastinate_queue_v1#' || _queue,
                          '{{"type": "job_inserted", "job_id": null}}');
    END LOOP;
    PERFORM pg_notify('procrastinate_any_queue_v1', '{{"type": "job_inserted", "job_id": null}}');
    IF TG_OP = 'DELETE' THEN
        DELETE FROM kiosk_queue_starts WHERE queue = OLD.queue;
    ELSIF NEW.max_per_second IS NULL THEN
        DELETE FROM kiosk_queue_starts WHERE queue = NEW.queue;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER kiosk_queue_controls_changed
    AFTER INSERT OR UPDATE OR DELETE ON kiosk_queue_controls
    FOR EACH ROW EXECUTE FUNCTION kiosk_queue_controls_changed();
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(
        """
        DROP TRIGGER IF EXISTS kiosk_queue_controls_changed ON kiosk_queue_controls;
        DROP FUNCTION IF EXISTS kiosk_queue_controls_changed();
        DROP FUNCTION IF EXISTS kiosk_restamp_starts(bigint[]);
        DROP FUNCTION IF EXISTS kiosk_release_jobs(bigint[], bigint);
        DROP FUNCTION IF EXISTS kiosk_fetch_jobs(character varying[], bigint, integer);
        DROP FUNCTION IF EXISTS kiosk_rate_window(double precision);
        DROP FUNCTION IF EXISTS kiosk_rate_starts(double precision);
        DROP INDEX IF EXISTS kiosk_jobs_todo_queue_priority_id;
        ALTER TABLE kiosk_queue_starts DROP COLUMN IF EXISTS job_id;
        """
    )
