"""Queues by concern and the operators' controls over them: pause, rate limit, concurrency cap.

- `names`: the kiosk's queues (a leaf: tasks/ and the domain import it).
- `store`: the `kiosk_queue_controls` rows, as `QueueControl`; one upsert (`set_limits` in
  queries.sql) writes an operator's limits and the settings' defaults alike.
- `service`: checks, audit, defaults from KIOSK_QUEUE_LIMITS; the one path of the JSON API
  (`routes`), the dashboard and `kiosk queues`.

Enforcement lives in the workers' fetch (kiosk/jobs); docs/workers.md, "Queue controls".
"""
