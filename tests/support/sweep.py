"""The stalled-job sweep in a thread, for drills that kill workers (bench/drills/)."""

from __future__ import annotations

import asyncio
import threading


class Sweeper:
    """Runs the production stalled-job sweep (`kiosk.jobs.maintenance.retry_stalled_jobs`, which the
    workers' periodic `jobs.retry_stalled_jobs` runs each minute) every `every` seconds, in a thread
    of this process, with its own pool: a drill sees a dead worker's jobs go back within seconds."""

    def __init__(self, stalled_after: float, every: float = 2.0):
        self.stalled_after, self.every = stalled_after, every
        self.retried: list[int] = []
        self.errors = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        from kiosk import db
        from kiosk.jobs import maintenance
        from kiosk.queue import app

        pool = db.create_pool(role="drill", min_size=1, max_size=2, timeout=5)
        await pool.open(wait=False)
        await app.open_async(pool)
        try:
            while not self._stop.is_set():
                try:
                    self.retried += await maintenance.retry_stalled_jobs(
                        app.job_manager, stalled_after=self.stalled_after
                    )
                except Exception:  # noqa: BLE001 - the database may be down: try again later
                    self.errors += 1
                await asyncio.sleep(self.every)
        finally:
            await app.close_async()
            await db.close_pool()

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)
