"""Group commit: concurrent requests of one process share one transaction.

A commit (and its WAL flush) per notification is what limits ingestion, not the rows. Requests
that arrive while a batch is being written wait at most `linger` seconds (or until `max_items`
are waiting), then go to the database together in one transaction. An idle process writes a lone
request at once. Each caller gets its own result only after the whole batch has committed, or the
batch's exception: nobody is told "stored" for a row that was not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Collects items from concurrent coroutines and hands them to `write` in batches.

    `write(items)` returns one result per item, in order; a result that is an exception is raised
    to that item's caller only. If `write` raises, every caller of the batch gets the exception.
    At most `max_in_flight` batches are written at once (each holds one pooled connection).
    """

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        max_items: int = 100,
        linger: float = 0.001,
        max_in_flight: int = 2,
    ):
        self.write = write
        self.max_items = max_items
        self.linger = linger
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._room: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._writers: set[asyncio.Task[None]] = set()
        # Counters for tests and the benchmark: transactions written and items in them.
        self.batches = 0
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """Queue `item` for the next batch; its result once that batch committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.get_loop() is not loop:
            self._room = room = asyncio.Event()
            self._flusher = loop.create_task(self._flush(room))
        # The caller may be cancelled (client gone): the batch goes on, the future is dropped.
        return await future

    async def _flush(self, room: asyncio.Event) -> None:
        """Start batches while items wait; `room` is set each time a batch is written."""
        try:
            while self._pending:
                if self._in_flight and len(self._pending) < self.max_items:
                    # A batch is being written: let more requests join this one.
                    await asyncio.sleep(self.linger)
                else:
                    # Requests parsed in this turn of the loop still join.
                    await asyncio.sleep(0)
                while self._in_flight >= self.max_in_flight:
                    room.clear()
                    await room.wait()
                batch = self._pending[: self.max_items]
                del self._pending[: self.max_items]
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._write(batch))
                self._writers.add(task)
                task.add_done_callback(self._writers.discard)
        finally:
            self._flusher = None

    async def _write(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self.write([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            if self._room is not None:
                self._room.set()
