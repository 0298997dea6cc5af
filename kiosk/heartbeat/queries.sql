-- name: fleet_heartbeats
-- Registered procrastinate workers: how many beat within the threshold, how many did not.
SELECT
    count(*) FILTER (WHERE last_heartbeat >= now() - %(stale_seconds)s * interval '1 second') AS fresh,
    count(*) FILTER (WHERE last_heartbeat < now() - %(stale_seconds)s * interval '1 second') AS stale
FROM procrastinate_workers;

-- name: host_connections
-- Connections to this database named with a process prefix (`kiosk-worker:<host>:`): processes, connections, seconds since the last activity.
SELECT
    count(DISTINCT application_name) AS processes,
    count(*) AS connections,
    extract(epoch FROM now() - max(greatest(backend_start, query_start, state_change)))::float AS idle_seconds
FROM pg_stat_activity
WHERE datname = current_database()
  AND starts_with(application_name, %(prefix)s);
