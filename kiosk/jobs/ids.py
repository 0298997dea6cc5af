"""The id of a job that procrastinate read from the database."""

from __future__ import annotations

from procrastinate.jobs import Job


class JobWithoutId(RuntimeError):
    """A job that was never deferred (only those have no id) where a stored job was expected."""


def job_id(job: Job) -> int:
    """`job.id`, which procrastinate types as optional: a Job built to be deferred has none yet,
    but every job a worker runs or a query returns was read back with its id."""
    if job.id is None:
        raise JobWithoutId(f"a job of task {job.task_name!r} has no id: it was never deferred")
    return job.id
