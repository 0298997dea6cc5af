"""The worker side of the job queue: outcomes, timeouts, shutdown retries, maintenance.

procrastinate runs the jobs; this package adds what an operator needs on top (docs/workers.md).
"""
