"""webhooks: store a batch of notifications with their processing jobs in one statement

`kiosk_store_notifications_v1` does in one call what took the webhook's group commit seven round
trips (BEGIN, the inbox insert, SAVEPOINT, procrastinate's batch defer, RELEASE, the job ids'
update, COMMIT): called alone on an autocommit connection it is its own transaction, so the rows
and their jobs commit together in one round trip (docs/benchmarks.md, "Webhook ingestion").

- Ids seen before are skipped (`ON CONFLICT DO NOTHING` on `notification_id`).
- Each provider order with a new `received` row gets one job, the first such row records it; the
  other rows of that order in the batch collapse into it (no `job_id`), as with procrastinate's
  queueing lock across transactions.
- The jobs are plain rows of `procrastinate_jobs`, as `procrastinate_defer_jobs_v1` writes them
  (its triggers record the `deferred` event and NOTIFY the workers); their queue, task and
  priority come from the caller (the registered task). A job already waiting with the queueing
  lock `mp-order-<provider order>` takes the place of a new one: `ON CONFLICT ... DO UPDATE ...
  WHERE false` updates nothing but locks that waiting job until this transaction ends, so no
  worker starts it without seeing the new rows (what `kiosk.queue.defer` does with `FOR KEY
  SHARE` after a clash); a waiting job that a worker took meanwhile is no longer in the unique
  index, and a new job is inserted.
- Jobs are inserted in the order of their queueing lock, rows in the order of their notification
  id, so two concurrent batches never wait on each other in opposite orders.
- Generic plans (`plan_cache_mode`): the batch's arrays would otherwise make PostgreSQL plan the
  statement again on every call.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
        CREATE FUNCTION kiosk_store_notifications_v1(
            _notification_ids text[], _types text[], _actions text[], _resource_ids text[],
            _request_ids text[], _payloads text[],
            _queue_name text, _task_name text, _priority integer
        )
            RETURNS TABLE (id bigint, notification_id text, resource_id text, state text,
                           job_id bigint)
            LANGUAGE plpgsql
            -- Its statements are planned once per connection, not on every call: for the small
            -- batches of a quiet API, a custom plan would win on estimated cost and be made anew
            -- each time (~0.3 ms). The generic plans probe the same indexes (EXPLAIN).
            SET plan_cache_mode = force_generic_plan
        AS $$
        #variable_conflict use_column
        DECLARE
            _ids bigint[];
            _notifications text[];
            _resources text[];
            _states text[];
            _jobs bigint[];
        BEGIN
            WITH incoming AS (
                SELECT n.*, intent.order_id
                FROM unnest(_notification_ids, _types, _actions, _resource_ids, _request_ids,
                            _payloads)
                    WITH ORDINALITY AS n(notification_id, type, action, resource_id, request_id,
                                         payload, position)
                LEFT JOIN payment_intents AS intent
                    ON n.type = 'order' AND intent.provider_order_id = n.resource_id
            ), inserted AS (
                INSERT INTO webhook_inbox AS inbox (notification_id, type, action, resource_id,
                                                    request_id, payload, state, processed_at)
                SELECT i.notification_id, i.type, i.action, i.resource_id, i.request_id,
                       i.payload::jsonb,
                       CASE WHEN i.type = 'order' THEN 'received' ELSE 'ignored' END,
                       CASE WHEN i.type <> 'order' THEN now() END
                FROM incoming AS i ORDER BY i.position
                ON CONFLICT (notification_id) DO NOTHING
                RETURNING inbox.id, inbox.notification_id, inbox.resource_id, inbox.state
            ), firsts AS (
                -- The first new row of each provider order defers its job.
                SELECT DISTINCT ON (r.resource_id) r.id, r.resource_id, i.order_id
                FROM inserted AS r JOIN incoming AS i USING (notification_id)
                WHERE r.state = 'received'
                ORDER BY r.resource_id, r.id
            ), jobs AS (
                INSERT INTO procrastinate_jobs AS job (queue_name, task_name, priority, lock,
                                                       queueing_lock, args)
                SELECT _queue_name, _task_name, _priority,
                       -- An order no intent knows yet has no kiosk order to lock on.
                       CASE WHEN f.order_id IS NULL THEN 'mp-order-' || f.resource_id
                            ELSE 'order-' || f.order_id END,
                       'mp-order-' || f.resource_id,
                       jsonb_build_object('provider_order_id', f.resource_id)
                FROM firsts AS f ORDER BY 'mp-order-' || f.resource_id
                ON CONFLICT (queueing_lock) WHERE status = 'todo'
                    DO UPDATE SET queueing_lock = EXCLUDED.queueing_lock WHERE false
                RETURNING job.id, job.queueing_lock
            )
            SELECT array_agg(r.id), array_agg(r.notification_id), array_agg(r.resource_id),
                   array_agg(r.state), array_agg(j.id)
              INTO _ids, _notifications, _resources, _states, _jobs
            FROM inserted AS r
            LEFT JOIN firsts AS f ON f.id = r.id
            LEFT JOIN jobs AS j ON j.queueing_lock = 'mp-order-' || f.resource_id;

            IF _ids IS NULL THEN
                RETURN;
            END IF;
            -- The rows that deferred a job name it (`id = ANY`: primary-key probes, no scan).
            UPDATE webhook_inbox AS inbox SET job_id = batch.job_id
            FROM unnest(_ids, _jobs) AS batch(id, job_id)
            WHERE inbox.id = ANY(_ids) AND inbox.id = batch.id AND batch.job_id IS NOT NULL;

            RETURN QUERY
                SELECT * FROM unnest(_ids, _notifications, _resources, _states, _jobs);
        END;
        $$;
        """
    )


def downgrade() -> None:
    run_sql(
        "DROP FUNCTION IF EXISTS kiosk_store_notifications_v1("
        "text[], text[], text[], text[], text[], text[], text, text, integer);"
    )
