-- name: save_job_traces
-- The trace context of the span that deferred each job (same transaction as the defer); a
-- second save for a job (its batch's own origin) replaces the first.
INSERT INTO kiosk_job_traces (job_id, traceparent, tracestate)
SELECT job_id, traceparent, tracestate
FROM unnest(%(job_ids)s::bigint[], %(traceparents)s::text[], %(tracestates)s::text[])
    AS t(job_id, traceparent, tracestate)
ON CONFLICT (job_id) DO UPDATE
    SET traceparent = excluded.traceparent, tracestate = excluded.tracestate;

-- name: job_trace
SELECT traceparent, tracestate FROM kiosk_job_traces WHERE job_id = %(job_id)s;
