"""Group commit of job finishes: the jobs that end while one commit is written share the next.

procrastinate finishes each job in its own transaction (BEGIN, `procrastinate_finish_job_v1`,
COMMIT: three round trips and a WAL flush per job), and kiosk's outcome row was one more. A worker
running ten jobs at once spends most of its time there. `GroupCommitManager` keeps procrastinate's
`finish_job` / `retry_job` contract and sends the jobs that ended while the previous batch was
being written together, in one statement (`kiosk_finish_jobs`, revision 0020) on an autocommit
connection: one round trip, one transaction, one WAL flush for the batch. Each job is finished by
procrastinate's own SQL functions, so its triggers and events are the released ones.

While a worker runs, a batch also takes the jobs for the slots its commit frees, in the same
statement (`finish_and_fetch_jobs`, through the fetcher's `_prefetch`/`_prefetched` hooks), and a
batch stops gathering as soon as every job the worker was handed waits for it (`_all_waiting`).

Guarantees, each tested with real workers (tests/integration/test_job_finishes.py):
- a caller returns only once its job's new state and its `job_outcomes` row (handed over by the
  outcome middleware, `hand_outcome`) are committed, in the same transaction;
- a batch that fails (the database is gone, the statement fails) fails every caller in it, as a
  failed finish does in procrastinate: the job stays `doing` until the stalled-job sweep;
- one job refused (it is no longer `doing`, or its retry clashes with a queueing lock) fails only
  its own caller, with the error procrastinate would have raised;
- with KIOSK_WORKER_BATCHING=false each finish is written alone, still with its outcome row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from procrastinate import exceptions, jobs, manager, utils
from psycopg import sql

from kiosk.db import autocommit_on
from kiosk.jobs.held import HeldConnection, fetch_dicts
from kiosk.jobs.ids import job_id
from kiosk.settings import get_settings
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.jobs")
logger = logging.getLogger("kiosk.jobs")

# Most jobs in one statement: a worker has at most KIOSK_DB_POOL_MAX_SIZE (<= 100) running jobs,
# so this only bounds a statement after a stall; it also keeps the retries' subtransactions few.
MAX_BATCH = 64
# A `job_outcomes` row as the outcome middleware hands it over and kiosk_finish_jobs reads it
# (a JSON array per row); ended_at is started_at + duration_seconds.
OUTCOME_FIELDS = (
    "job_id",
    "attempt",
    "task_name",
    "queue_name",
    "worker_id",
    "worker_name",
    "status",
    "started_at",  # epoch seconds
    "duration_seconds",
    "result",  # JSON text
    "error_type",
    "error_message",
    "traceback",
)
# Turns of the event loop a batch waits for more finishes: until this many bring none ...
QUIET_TURNS = 5
# ... and at most this many in all (each turn is a few microseconds when the loop has no I/O).
MAX_TURNS = 24
# Under load (a batch committed less than BUSY_WINDOW s ago), a batch of fewer than SMALL_BATCH
# finishes waits LINGER s more: worth less than the commit it saves (2-5 ms here with fsync).
SMALL_BATCH = 4
LINGER = 0.002
BUSY_WINDOW = 0.05


@dataclass(slots=True)
class Prefetch:
    """Jobs a finish batch takes in its transaction for a worker's free slots (fetcher.py)."""

    worker_id: int
    queues: list[str] | None
    count: int
    query: sql.Composed  # finish_and_fetch_jobs for `count` jobs
    seen: int  # the fetcher's notification count before the round trip
    sent: float  # loop time when it was sent


@dataclass(slots=True)
class _Finish:
    job_id: int
    end_status: str | None  # None: a retry
    delete_job: bool = False
    retry_at: datetime.datetime | None = None
    priority: int | None = None
    queue: str | None = None
    lock: str | None = None
    outcome: tuple[Any, ...] | None = None
    future: asyncio.Future[None] | None = field(default=None, repr=False)


class GroupCommitManager(manager.JobManager):
    """procrastinate's JobManager whose `finish_job` and `retry_job` are group-committed."""

    def __init__(self, connector: Any):
        super().__init__(connector)
        self._outcomes: dict[int, tuple[Any, ...]] = {}
        self._pending: list[_Finish] = []
        self._drainer: asyncio.Task[None] | None = None
        self._batching: bool | None = None  # KIOSK_WORKER_BATCHING, read at the first finish
        self._worker_ids: set[int] = set()  # workers of this process running now
        self._finish_conn = HeldConnection(connector)  # while a worker of this process runs
        self._last_write = -1e9  # time.monotonic() when the last batch committed
        self._joined = asyncio.Event()  # set when every running job waits for the next commit
        # For tests and benchmarks: transactions written and jobs in them.
        self.batches = 0
        self.finished = 0

    def hand_outcome(self, job_id: int, row: tuple[Any, ...]) -> None:
        """The outcome row of the attempt that just ended (its values in the order of
        OUTCOME_FIELDS): written with the job's finish."""
        self._outcomes[job_id] = row

    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        id_ = job_id(job)
        await self._submit(
            _Finish(
                id_,
                status.value,
                delete_job=delete_job,
                outcome=self._outcomes.pop(id_, None),
            )
        )

    async def retry_job(
        self,
        job: jobs.Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        id_ = job_id(job)
        await self._submit(
            _Finish(
                id_,
                None,
                retry_at=retry_at or utils.utcnow(),
                priority=priority,
                queue=queue,
                lock=lock,
                outcome=self._outcomes.pop(id_, None),
            )
        )

    # -- the group commit ------------------------------------------------------------------------

    def _batching_on(self) -> bool:
        if self._batching is None:
            self._batching = get_settings().worker_batching
        return self._batching

    async def _submit(self, item: _Finish) -> None:
        if not self._batching_on():
            error = (await self._write([item])).get(item.job_id)
            if error is not None:
                raise error
            return
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        if self._drainer is None or self._drainer.get_loop() is not loop:
            # Items left by a loop that is gone (tests run one loop per test) can never complete.
            self._pending = [p for p in self._pending if p.future and p.future.get_loop() is loop]
            self._pending.append(item)
            self._joined = asyncio.Event()
            self._drainer = loop.create_task(self._drain(), name="kiosk group commit")
        else:
            self._pending.append(item)
        if self._all_waiting(self._pending):
            self._joined.set()
        await item.future

    async def _drain(self) -> None:
        try:
            while self._pending:
                if not self._all_waiting(self._pending):
                    await self._gather_more()
                if (
                    len(self._pending) < SMALL_BATCH
                    and self._busy()
                    and not self._all_waiting(self._pending)
                ):
                    # Under load, a small batch waits a moment for company: jobs fetched one
                    # round trip apart otherwise stay apart, each group paying its own commit.
                    # It stops waiting once every running job has joined.
                    self._joined.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(LINGER):
                            await self._joined.wait()
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    errors = await self._write(batch)
                except Exception as exc:  # every caller of the batch gets it
                    for item in batch:
                        _settle(item, exc)
                    continue
                except BaseException as exc:  # cancelled: the callers must not hang
                    for item in batch:
                        _settle(item, exceptions.ConnectorException("finish interrupted"))
                    raise exc
                self._last_write = time.monotonic()
                for item in batch:
                    _settle(item, errors.get(item.job_id))
        finally:
            self._drainer = None

    def _busy(self) -> bool:
        """A batch was written moments ago: finishes are flowing (an idle worker's lone job is
        never held back)."""
        return time.monotonic() - self._last_write < BUSY_WINDOW

    async def _gather_more(self) -> None:
        """Let the jobs that end in the next few turns of the event loop join the batch.

        procrastinate hands a fetched batch of jobs out one per turn or two, so short jobs end
        a turn apart: waiting until QUIET_TURNS turns bring no new finish (at most MAX_TURNS)
        gathers them, where a fixed wait would delay every lone finish. No timer, no sleep.
        """
        quiet = 0
        seen = len(self._pending)
        for _ in range(MAX_TURNS):
            await asyncio.sleep(0)
            if self._all_waiting(self._pending):
                return  # no job of this process is left to end before the commit
            if len(self._pending) == seen:
                quiet += 1
                if quiet >= QUIET_TURNS:
                    return
            else:
                quiet, seen = 0, len(self._pending)
            if seen >= MAX_BATCH:
                return

    async def _write(self, batch: list[_Finish]) -> dict[int, exceptions.ConnectorException]:
        """Write one batch in one transaction; the refused jobs with their errors."""
        outcomes = [item.outcome for item in batch if item.outcome is not None]
        params = {
            "job_ids": [item.job_id for item in batch],
            "end_statuses": [item.end_status for item in batch],
            "delete_jobs": [item.delete_job for item in batch],
            "retry_ats": [item.retry_at for item in batch],
            "new_priorities": [item.priority for item in batch],
            "new_queue_names": [item.queue for item in batch],
            "new_locks": [item.lock for item in batch],
            "outcomes": json.dumps(outcomes) if outcomes else None,
        }
        # One statement in autocommit is one transaction in one round trip (psycopg would
        # otherwise send BEGIN and COMMIT on their own).
        held = bool(self._worker_ids) and self._batching_on()
        prefetch = self._prefetch([item.job_id for item in batch]) if held else None
        rows: list[dict[str, Any]] | None = None
        query: sql.Composed | str
        try:
            if prefetch is not None:
                query = prefetch.query
                params |= {"queues": prefetch.queues, "worker_id": prefetch.worker_id}
            else:
                query = QUERIES["finish_jobs"]
            if held:
                async with self._finish_conn.use() as conn:
                    rows = await fetch_dicts(conn, query, params)
            else:
                async with autocommit_on(self._finish_conn.pool()) as conn:
                    rows = await fetch_dicts(conn, query, params)
        except psycopg.Error as exc:  # taking or setting up the connection
            raise exceptions.ConnectorException(str(exc)) from exc
        finally:
            if prefetch is not None:
                # Before the callers return (their slots free): the jobs are buffered first.
                taken = None if rows is None else [r for r in rows if r["refused_id"] is None]
                await self._prefetched(prefetch, taken)
        refused = [row for row in rows if row["refused_id"] is not None]
        self.batches += 1
        self.finished += len(batch) - len(refused)
        return {
            row["refused_id"]: _refusal(
                row["refused_sqlstate"], row["refused_message"], row["refused_constraint"]
            )
            for row in refused
        }

    # -- hooks for a fetcher that takes jobs with a batch (fetcher.py) -------------------------

    def _all_waiting(self, pending: list[_Finish]) -> bool:
        """Every job the workers of this process run waits for this commit: none can join."""
        return False

    def _prefetch(self, job_ids: list[int]) -> Prefetch | None:
        """The jobs to take in this batch's transaction, if any."""
        return None

    async def _prefetched(self, prefetch: Prefetch, rows: list[dict[str, Any]] | None) -> None:
        """The batch committed with these job rows (None: it failed)."""

    async def register_worker(self) -> int:
        worker_id = await super().register_worker()
        self._worker_ids.add(worker_id)
        return worker_id

    async def unregister_worker(self, worker_id: int) -> None:
        try:
            await super().unregister_worker(worker_id)
        finally:
            self._worker_ids.discard(worker_id)
            if not self._worker_ids and self._drainer is None:
                await self._finish_conn.release()


def _refusal(sqlstate: str, message: str, constraint: str | None) -> exceptions.ConnectorException:
    if sqlstate == "23505":  # unique_violation: a newer job waits with this queueing lock
        return exceptions.UniqueViolation(message, constraint_name=constraint, queueing_lock=None)
    return exceptions.ConnectorException(message)


def _settle(item: _Finish, error: BaseException | None) -> None:
    future = item.future
    if future is None or future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
