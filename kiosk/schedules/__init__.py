"""Schedules: operator-defined HTTP requests on a cron, stored in the database, with their history.

`spec` validates what may be scheduled, `cron` computes ticks, `store` holds the SQL,
`dispatcher` turns ticks into runs and jobs, `executor` performs a run, `service` serves the admin
API (`routes`). Jobs: `schedules.dispatch` (periodic.py) and `schedules.execute_run`
(tasks/schedules.py). Guide: docs/schedules.md.
"""
