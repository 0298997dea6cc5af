"""Per-job log lines of a worker: procrastinate's "Starting job" and "... ended with status:
Success" INFO records, left out unless KIOSK_WORKER_JOB_LOGS is true.

Two records per job are a tenth of a busy worker's CPU (docs/benchmarks.md, "Jobs") and say less
than `job_outcomes`, which keeps every attempt with its duration, result and error. Everything
else procrastinate logs stays: the worker's start and stop, retries ("Error, to retry"), aborts,
failures (ERROR, with the traceback), and whatever `--log-level` lets through from other loggers.
"""

from __future__ import annotations

import logging

# procrastinate's `action` of the records of a job that started and of one that succeeded.
QUIET_ACTIONS = frozenset({"start_job", "job_success"})


class QuietJobs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "action", None) not in QUIET_ACTIONS


_filter = QuietJobs()


def quiet_job_logs(worker_name: str | None) -> None:
    """Drop the two per-job records from the worker's loggers (procrastinate logs the start on
    `procrastinate.worker.<name>`, the outcome on `procrastinate.worker`)."""
    names = ["procrastinate.worker"]
    if worker_name:
        names.append(f"procrastinate.worker.{worker_name}")
    for name in names:
        logging.getLogger(name).addFilter(_filter)  # adding it twice keeps one
