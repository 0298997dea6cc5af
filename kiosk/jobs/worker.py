"""`KioskWorker`: procrastinate's worker, which gives its unstarted jobs back as soon as it stops.

Built by `KioskApp._worker`. It tells the job manager its concurrency (the size of its fetch
buffer), and on `stop()` (SIGTERM, SIGINT, a failed side task) has the manager put the jobs it
fetched but never started back in `todo` at once, instead of when it unregisters after the
graceful timeout. Only public methods of procrastinate's Worker are overridden.
"""

from __future__ import annotations

import asyncio
from typing import Any

from procrastinate import worker

from kiosk.jobs.fetcher import BatchFetchManager


class KioskWorker(worker.Worker):
    def __init__(self, *, batching: bool = True, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(self.app.job_manager, BatchFetchManager):
            self.app.job_manager.configure_worker(concurrency=self.concurrency, batching=batching)
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._releases: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        self._own_loop = asyncio.get_running_loop()
        try:
            await super().run()  # type: ignore[no-untyped-call]  # procrastinate: unannotated
        finally:
            self._own_loop = None

    def stop(self) -> None:
        super().stop()  # type: ignore[no-untyped-call]  # procrastinate: unannotated
        loop = self._own_loop
        if loop is not None and not loop.is_closed():
            # stop() may come from a signal handler or another thread: release on the loop.
            loop.call_soon_threadsafe(self._release_buffer)

    def _release_buffer(self) -> None:
        manager = self.app.job_manager
        if self.worker_id is None or not isinstance(manager, BatchFetchManager):
            return
        task = asyncio.ensure_future(manager.release_buffer(self.worker_id))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
