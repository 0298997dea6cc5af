"""The procrastinate app, `tasks.app`, with every task registered on it.

Run workers with `procrastinate --app=tasks.app worker`. Importing this package needs no database.
"""

from kiosk.queue import app

# Task modules register themselves on `app` when imported; keep one line per area.
import periodic  # noqa: E402,F401  (periodic schedules)
import tasks.schedules  # noqa: E402,F401  (scheduled HTTP requests)
import tasks.orders  # noqa: E402,F401  (receipt email, notify hook)
import tasks.payments  # noqa: E402,F401  (Mercado Pago notifications)
import tasks.exports  # noqa: E402,F401  (CSV exports with progress)

__all__ = ["app"]
