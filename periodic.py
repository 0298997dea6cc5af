"""Periodic tasks: each schedule is a few lines calling into the domain.

procrastinate defers at most one job per tick and task, whatever the number of workers (a unique
row in `procrastinate_periodic_defers`), so every schedule here is safe to run on a fleet.
"""

from kiosk.queue import app

__all__ = ["app"]
