"""The job manager of kiosk's app: procrastinate's, plus batched fetch with the queue controls.

Each base overrides a few methods of `procrastinate.manager.JobManager` cooperatively (always
through `super()`), so the bases combine in one class.
"""

from __future__ import annotations

from kiosk.jobs.fetcher import BatchFetchManager


class KioskJobManager(BatchFetchManager):
    pass
