"""The procrastinate app, `tasks.app`, with every task registered on it.

Run workers with `procrastinate --app=tasks.app worker`. Importing this package needs no database.
"""

# Task modules register themselves on `app` when imported; keep one line per area.
import periodic  # noqa: E402,F401  (periodic schedules)
import tasks.exports  # noqa: E402,F401  (CSV exports with progress)
import tasks.orders  # noqa: E402,F401  (receipt email, notify hook)
import tasks.payments  # noqa: E402,F401  (Mercado Pago notifications)
import tasks.schedules  # noqa: E402,F401  (scheduled HTTP requests)
from kiosk.queue import app

__all__ = ["app"]
