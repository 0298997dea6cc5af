"""`KioskJobManager`: the job manager of kiosk's app (`KioskApp`), procrastinate's own plus
kiosk's worker-side batching, each base overriding its part cooperatively (calling super())."""

from __future__ import annotations

from kiosk.jobs.finisher import GroupCommitManager


class KioskJobManager(GroupCommitManager):
    """Finishes in group commits (kiosk/jobs/finisher.py)."""
