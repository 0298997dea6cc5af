"""The job manager of kiosk's app: procrastinate's, plus batched fetch with the queue controls
and group-committed finishes.

Each base overrides a few methods of `procrastinate.manager.JobManager` cooperatively (always
through `super()`), so the bases combine in one class: `BatchFetchManager` fetches (fetcher.py),
`GroupCommitManager` finishes and retries (finisher.py).
"""

from __future__ import annotations

from kiosk.jobs.fetcher import BatchFetchManager
from kiosk.jobs.finisher import GroupCommitManager


class KioskJobManager(BatchFetchManager, GroupCommitManager):
    pass
