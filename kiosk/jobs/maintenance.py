"""Queue housekeeping run by the periodic tasks in periodic.py.

- `retry_stalled_jobs`: a worker that dies (kill -9, OOM, lost host) leaves its jobs `doing`
  forever. procrastinate's stalled-job API finds the jobs of workers whose heartbeat is older than
  KIOSK_WORKER_STALLED_AFTER; each goes back to `todo` and its lost attempt gets a `worker_lost`
  outcome.
- `prune_jobs`: finished jobs (and their events and outcomes) are deleted after their retention,
  in batches of KIOSK_PRUNE_BATCH_SIZE, one short transaction each, so a big table never holds
  long locks and a retention change catches up over a few runs. Outcomes older than
  KIOSK_RETAIN_JOB_OUTCOMES_DAYS go too, whatever their job (one deleted by other means, or a
  long-lived job's early attempts).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from procrastinate import exceptions, manager

from kiosk import db
from kiosk.jobs import ids
from kiosk.settings import get_settings
from kiosk.sql import load_queries

logger = logging.getLogger("kiosk.jobs")
QUERIES = load_queries("kiosk.jobs")


async def release_queueing_lock(job_id: int) -> None:
    """Let a running or stalled job go back to `todo` while a newer job with its lock waits.

    procrastinate retries a job by putting its row back to `todo`, which violates the unique
    queueing lock when a newer job already waits with that lock (procrastinate issue #1543) and
    would leave the job stuck in `doing`. Dropping the job's own queueing lock first lets the retry
    through; a shared `lock` still runs the two one at a time.
    """
    async with db.transaction() as conn:
        await conn.execute(QUERIES["release_queueing_lock"], {"job_id": job_id})


async def retry_stalled_jobs(job_manager: manager.JobManager, *, stalled_after: float) -> list[int]:
    """Put the jobs of stalled workers back to `todo`; return their ids."""
    retried = []
    for job in await job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        stalled_id = ids.job_id(job)
        try:
            await job_manager.retry_job(job)
        except exceptions.ConnectorException:
            # A newer job waits with its queueing lock (#1543): drop the lock, try once more.
            await release_queueing_lock(stalled_id)
            try:
                await job_manager.retry_job(job)
            except exceptions.ConnectorException:
                # It finished (or was retried) between the queries: nothing left to do.
                logger.info("stalled job %s changed state before its retry", stalled_id)
                continue
        retried.append(stalled_id)
        logger.warning(
            "job %s (%s) of stalled worker %s is back in todo",
            stalled_id,
            job.task_name,
            job.worker_id,
        )
        async with db.transaction() as conn:
            await conn.execute(
                QUERIES["insert_lost_outcome"],
                {
                    "job_id": stalled_id,
                    "attempt": job.attempts + 1,
                    "task_name": job.task_name,
                    "queue_name": job.queue,
                    "worker_id": job.worker_id,
                    "error_message": (
                        f"worker {job.worker_id} stopped sending heartbeats for {stalled_after:g}s "
                        "during this attempt; the job was put back in todo"
                    ),
                },
            )
    return retried


@dataclass(frozen=True)
class PruneResult:
    jobs: int  # finished jobs deleted, with their events and outcomes
    old_outcomes: int  # outcomes older than KIOSK_RETAIN_JOB_OUTCOMES_DAYS, whatever their job
    batches: int


async def prune_jobs(
    *,
    succeeded_days: float | None = None,
    failed_days: float | None = None,
    batch_size: int | None = None,
    outcomes_days: float | None = None,
) -> PruneResult:
    """Delete finished jobs past their retention (settings by default), batch by batch."""
    settings = get_settings()
    succeeded_days = settings.prune_succeeded_days if succeeded_days is None else succeeded_days
    failed_days = settings.prune_failed_days if failed_days is None else failed_days
    outcomes_days = settings.retain_job_outcomes_days if outcomes_days is None else outcomes_days
    batch_size = batch_size or settings.prune_batch_size
    now = datetime.datetime.now(datetime.UTC)
    params = {
        "succeeded_before": now - datetime.timedelta(days=succeeded_days),
        "failed_before": now - datetime.timedelta(days=failed_days),
        "batch_size": batch_size,
        "after_id": 0,
    }
    jobs = batches = 0
    while True:
        async with db.transaction() as conn:
            row = await db.fetch_row(conn, QUERIES["prune_finished_jobs"], params)
        batches += 1
        jobs += row["deleted"]
        if row["deleted"] < batch_size:
            break
        params["after_id"] = row["last_id"]

    # Outcomes whose job is gone by other means (delete_jobs, an operator) age out too (0: kept).
    outcome_params = {
        "before": now - datetime.timedelta(days=outcomes_days),
        "batch_size": batch_size,
    }
    old_outcomes = 0
    while outcomes_days > 0:
        async with db.transaction() as conn:
            cursor = await conn.execute(QUERIES["prune_old_outcomes"], outcome_params)
            deleted = cursor.rowcount
        batches += 1
        old_outcomes += deleted
        if deleted < batch_size:
            break
    if jobs or old_outcomes:
        logger.info("pruned %s finished jobs and %s old outcomes", jobs, old_outcomes)
    return PruneResult(jobs=jobs, old_outcomes=old_outcomes, batches=batches)
