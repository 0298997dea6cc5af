"""Batched fetch: a worker takes several jobs per round trip, the queue controls enforced in SQL.

procrastinate's worker asks its job manager for one job each time a concurrency slot is free, until
it gets None. `BatchFetchManager.fetch_job` answers from a worker-local buffer; when the buffer is
empty it takes up to "free slots" jobs (concurrency minus jobs handed out and not finished) in one
statement (`fetch_jobs`: procrastinate's fetch semantics; with a pause, rate limit or cap on the
worker's queues, `kiosk_fetch_jobs` of migration 0019 enforces them; docs/workers.md, "Batched
fetch" and "How queue controls are enforced"), on a connection the worker keeps in autocommit whose
commits do not wait for the WAL flush (kiosk/jobs/held.py). A batch of finishes (finisher.py) also
takes, in its transaction, as many jobs as its commit frees slots (`_prefetch`/`_prefetched`).
Buffered jobs are `doing` with the worker's id, so a worker that dies leaves them to the
stalled-job sweep like any other; a worker that stops puts them back in `todo` at once
(`release_buffer`, called by `KioskWorker.stop` and by `unregister_worker`).

Wake-ups: after a round trip that came back short, the next call answers None without asking the
database unless a `job_inserted` notification arrived meanwhile, as the worker would have got None
anyway; an empty round trip during which a notification arrived is repeated once (the worker clears
its wake-up after the call). When a rate limit held jobs back, the worker is woken when its window
frees; after it finishes a job of a capped queue, it fetches again at once.
Other cases are left to procrastinate's notifications and polling.

State is per worker id; the concurrency and the batching switch are those of the last
`configure_worker` call (procrastinate's command runs one worker per process).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import functools
import logging
from collections.abc import Iterable
from typing import Any, cast

from procrastinate import connector, jobs, manager
from psycopg import sql

from kiosk.db import autocommit_on
from kiosk.jobs.finisher import Prefetch
from kiosk.jobs.held import HeldConnection, fetch_dicts
from kiosk.jobs.ids import job_id
from kiosk.sql import load_queries

logger = logging.getLogger("kiosk.jobs")
QUERIES = load_queries("kiosk.jobs")

ANY_QUEUE_CHANNEL = "procrastinate_any_queue_v1"
# A wake-up for a rate window that frees this soon is not worth a timer.
_MIN_WAKE = 0.005
# A rate limit's window counts a job from its fetch and has a guard of 0.2 s for the gap until
# the job starts (migration 0019). After a round trip slower than this (a commit held up by a busy
# disk), the jobs of rate-limited queues are restamped to now before they start; if that is slow
# too, or the whole took longer than _RESTAMP_WITHIN (the restamp must land while the window still
# counts the first stamp), they are given back unstarted.
RATE_ROUND_TRIP_LIMIT = 0.1
_RESTAMP_WITHIN = 1.0


@dataclasses.dataclass
class _Slots:
    """One worker's fetch state."""

    concurrency: int
    batching: bool
    buffer: collections.deque[jobs.Job] = dataclasses.field(default_factory=collections.deque)
    handed_out: set[int] = dataclasses.field(default_factory=set)
    # The last round trip took fewer jobs than asked, and the notification count before it.
    short: bool = False
    seen: int = 0
    closed: bool = False
    capped: frozenset[str] = frozenset()
    wake: asyncio.TimerHandle | None = None
    release_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    # The queues of the worker's last fetch (None: every queue), once it has asked.
    asked: bool = False
    queues: list[str] | None = None
    idle: bool = False  # fetch_job's last answer was None

    def wanted(self) -> int:
        if not self.batching:
            return 1
        return max(1, self.concurrency - len(self.handed_out))


class BatchFetchManager(manager.JobManager):
    def __init__(self, connector: connector.BaseConnector) -> None:
        super().__init__(connector)
        # Without a KioskWorker (the API, scripts): one job per call, as procrastinate does.
        self.worker_concurrency = 1
        self.worker_batching = False
        self._slots: dict[int, _Slots] = {}
        self._listeners: list[manager.NotificationCallback] = []
        self._notifications = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        # A worker's fetches go through one connection in autocommit, and their commits do not
        # wait for the WAL flush (kiosk/jobs/held.py, docs/workers.md "Batched fetch").
        self._fetch_conn = HeldConnection(connector, asynchronous_commit=True)
        self._hold_connection = False

    def configure_worker(self, *, concurrency: int, batching: bool) -> None:
        """Called by the worker before it registers: its slots and whether to batch."""
        self.worker_concurrency = concurrency
        self.worker_batching = batching
        self._hold_connection = True

    def _slots_of(self, worker_id: int) -> _Slots:
        slots = self._slots.get(worker_id)
        if slots is None:
            slots = _Slots(concurrency=self.worker_concurrency, batching=self.worker_batching)
            self._slots[worker_id] = slots
        return slots

    async def register_worker(self) -> int:
        worker_id = await super().register_worker()
        self._slots_of(worker_id)
        return worker_id

    async def unregister_worker(self, worker_id: int) -> None:
        # Before the worker row goes: its deletion sets worker_id NULL on the buffered jobs.
        await self.release_buffer(worker_id)
        try:
            await super().unregister_worker(worker_id)
        finally:
            self._slots.pop(worker_id, None)
            if not self._slots:
                await self._fetch_conn.release()

    async def listen_for_jobs(
        self,
        *,
        on_notification: manager.NotificationCallback,
        queues: Iterable[str] | None = None,
    ) -> None:
        async def counted(*, channel: str, notification: jobs.Notification) -> None:
            if notification["type"] == "job_inserted":
                self._notifications += 1
            await on_notification(channel=channel, notification=notification)

        self._listeners.append(counted)
        try:
            await super().listen_for_jobs(on_notification=counted, queues=queues)
        finally:
            self._listeners.remove(counted)

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        slots = self._slots_of(worker_id)
        slots.idle = False
        job = await self._fetch_job(slots, queues, worker_id)
        # None: the worker waits for a notification (or its poll) before it asks again.
        slots.idle = job is None
        return job

    async def _fetch_job(
        self, slots: _Slots, queues: Iterable[str] | None, worker_id: int
    ) -> jobs.Job | None:
        if slots.closed:
            return None
        slots.asked, slots.queues = True, None if queues is None else list(queues)
        if slots.buffer:
            return self._hand_out(slots, slots.buffer.popleft())
        if slots.short and slots.seen == self._notifications:
            # The last round trip found fewer jobs than it could take and nothing was inserted
            # since: the database would answer None too. The next call asks it again.
            slots.short = False
            return None
        slots.short = False
        wanted = slots.wanted()
        loop = asyncio.get_running_loop()
        for _ in range(2):
            seen = self._notifications
            sent = loop.time()
            rows = await self._fetch_rows(queues=slots.queues, worker_id=worker_id, count=wanted)
            fetched = await self._accept(worker_id, slots, rows, sent)
            if fetched is None:  # stopped during the round trip
                return None
            # Empty, but a job was inserted during the round trip: the worker clears its wake-up
            # event after this call and would wait for the next poll, so ask once more now.
            if fetched or self._notifications == seen:
                break
        if not fetched:
            return None
        if len(fetched) < wanted:
            slots.short, slots.seen = True, seen
        slots.buffer.extend(fetched[1:])
        return self._hand_out(slots, fetched[0])

    async def _accept(
        self, worker_id: int, slots: _Slots, rows: list[dict[str, Any]], sent: float
    ) -> list[jobs.Job] | None:
        """The jobs a round trip took, in the order to start them; None if the worker stopped
        meanwhile (they went back). Rate-limited jobs of a slow round trip are restamped or
        given back."""
        fetched = sorted(
            (jobs.Job.from_row(row) for row in rows if row["id"] is not None),
            key=lambda job: (-job.priority, job.id or 0),
        )
        if rows:
            self._note_limits(slots, rows[0])
        if slots.closed:
            await self._release(worker_id, fetched)
            return None
        limited = [row["id"] for row in rows if row["rate_limited"]]
        slow = asyncio.get_running_loop().time() - sent > RATE_ROUND_TRIP_LIMIT
        if limited and slow and not await self._restamp(limited, sent):
            await self._release(worker_id, [job for job in fetched if job.id in limited])
            fetched = [job for job in fetched if job.id not in limited]
        return fetched

    # -- jobs taken by a finish batch (finisher.py's hooks) ----------------------------------------

    def _prefetch(self, job_ids: list[int]) -> Prefetch | None:
        """Take jobs with this finish batch for the slots its commit frees (the worker's free
        slots are its own fetch's, so the two never take more than the slots between them). Not
        when the worker stops, or when its last fetch found fewer jobs than it could take and
        none was inserted since."""
        if len(self._slots) != 1:
            return None
        worker_id, slots = next(iter(self._slots.items()))
        if not slots.batching or not slots.asked or slots.closed:
            return None
        if slots.short and slots.seen == self._notifications:
            return None
        count = sum(1 for id_ in job_ids if id_ in slots.handed_out)
        if not count:
            return None
        return Prefetch(
            worker_id=worker_id,
            queues=slots.queues,
            count=count,
            query=fetch_query("finish_and_fetch_jobs", count),
            seen=self._notifications,
            sent=asyncio.get_running_loop().time(),
        )

    def _all_waiting(self, pending: list[Any]) -> bool:
        if not self._slots:
            return False
        finishing = {item.job_id for item in pending}
        return all(
            not slots.buffer and slots.handed_out <= finishing for slots in self._slots.values()
        )

    async def _prefetched(self, prefetch: Prefetch, rows: list[dict[str, Any]] | None) -> None:
        """The batch committed with these jobs (None: it failed, nothing was taken)."""
        slots = self._slots.get(prefetch.worker_id)
        if slots is None or rows is None:
            return
        fetched = await self._accept(prefetch.worker_id, slots, rows, prefetch.sent)
        if fetched is None:  # the worker stopped meanwhile: they went back
            return
        if len(fetched) < prefetch.count and self._notifications == prefetch.seen:
            slots.short, slots.seen = True, prefetch.seen  # no more waiting, none inserted since
        slots.buffer.extend(fetched)
        if fetched and slots.idle:
            self._wake()  # the worker waits for a notification: its last fetch found nothing

    async def _fetch_rows(
        self, *, queues: list[str] | None, worker_id: int, count: int
    ) -> list[dict[str, Any]]:
        query = fetch_query("fetch_jobs", count)
        params = {"queues": queues, "worker_id": worker_id}
        if not self._hold_connection:  # not a worker's fetch loop (tests, scripts)
            async with autocommit_on(self._fetch_conn.pool()) as conn:
                return await fetch_dicts(conn, query, params)
        async with self._fetch_conn.use() as conn:
            return await fetch_dicts(conn, query, params)

    async def _restamp(self, job_ids: list[int], sent: float) -> bool:
        """Count these rate-limited jobs from now; False when they must not start."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await self.connector.execute_query_async(
                query=QUERIES["restamp_starts"], job_ids=job_ids
            )
        except Exception:  # noqa: BLE001 - give them back rather than break the rate limit
            logger.warning("could not restamp the starts of jobs %s", job_ids, exc_info=True)
            return False
        now = loop.time()
        if now - began <= RATE_ROUND_TRIP_LIMIT and now - sent < _RESTAMP_WITHIN:
            logger.info("slow fetch (%.3fs): jobs %s counted from now", began - sent, job_ids)
            return True
        logger.warning("slow fetch (%.3fs): jobs %s given back unstarted", now - sent, job_ids)
        return False

    def _hand_out(self, slots: _Slots, job: jobs.Job) -> jobs.Job:
        slots.handed_out.add(job_id(job))
        return job

    def _note_limits(self, slots: _Slots, row: dict[str, Any]) -> None:
        slots.capped = frozenset(row["capped_queues"] or ())
        wake_in = row["rate_wake_in"]
        if wake_in is None:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(wake_in, _MIN_WAKE)
        pending = slots.wake
        if pending is not None and not pending.cancelled() and pending.when() > loop.time():
            if pending.when() <= when:
                return  # an earlier wake-up is already due
            pending.cancel()
        slots.wake = loop.call_at(when, self._wake)

    def _wake(self) -> None:
        """What procrastinate does on a `job_inserted` notification: the workers fetch."""
        self._notifications += 1
        notification = cast(jobs.Notification, {"type": "job_inserted", "job_id": None})
        for listener in list(self._listeners):
            task = asyncio.ensure_future(
                listener(channel=ANY_QUEUE_CHANNEL, notification=notification)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _done(self, job: jobs.Job) -> None:
        slots = self._slots.get(job.worker_id) if job.worker_id is not None else None
        if slots is None or job.id not in slots.handed_out:
            return  # not one of ours: e.g. the stalled-job sweep retrying a dead worker's job
        slots.handed_out.discard(job.id)
        if job.queue in slots.capped:
            self._wake()  # a place under the cap is free again: take it now, not at the next poll

    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        try:
            await super().finish_job(job=job, status=status, delete_job=delete_job)
        finally:
            self._done(job)

    async def retry_job(
        self,
        job: jobs.Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        try:
            await super().retry_job(
                job=job, retry_at=retry_at, priority=priority, queue=queue, lock=lock
            )
        finally:
            self._done(job)

    async def release_buffer(self, worker_id: int) -> None:
        """The worker stops: fetch nothing more, and put the jobs it has not started back."""
        slots = self._slots.get(worker_id)
        if slots is None:
            return
        slots.closed = True
        if slots.wake is not None:
            slots.wake.cancel()
        buffered = list(slots.buffer)
        slots.buffer.clear()
        await self._release(worker_id, buffered)

    async def _release(self, worker_id: int, buffered: list[jobs.Job]) -> None:
        slots = self._slots_of(worker_id)
        async with slots.release_lock:  # unregister_worker waits for a release under way
            if not buffered:
                return
            ids = [job.id for job in buffered]
            try:
                rows = await self.connector.execute_query_all_async(
                    query=QUERIES["release_jobs"], job_ids=ids, worker_id=worker_id
                )
            except Exception:  # noqa: BLE001 - they stay `doing`: the stalled-job sweep has them
                logger.warning(
                    "worker %s could not put its unstarted jobs %s back in todo",
                    worker_id,
                    ids,
                    exc_info=True,
                )
                return
            logger.info(
                "worker %s put %s unstarted jobs back in todo: %s",
                worker_id,
                len(rows),
                [row["id"] for row in rows],
            )


@functools.cache
def fetch_query(name: str, count: int) -> sql.Composed:
    """`fetch_jobs` or `finish_and_fetch_jobs` for up to `count` jobs: one text, hence one
    prepared plan, per count."""
    number = sql.Literal(int(count))
    fetch_with = sql.SQL(QUERIES["fetch_jobs_with"]).format(count=number)
    return sql.SQL(QUERIES[name]).format(fetch_with=fetch_with, count=number)
