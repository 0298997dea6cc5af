"""The kiosk's queues, one per concern, so that an operator can pause or limit one concern (all
payments, all exports) without touching the others, and workers can be dedicated to one.

A leaf module: tasks/, periodic.py and the domain read these names without importing the rest of
kiosk.queues. Which task runs on which queue: docs/workers.md, "Queues".
"""

from __future__ import annotations

from typing import Final

# Mercado Pago notifications, ambiguous charges, refunds, stale payment intents.
PAYMENTS: Final = "payments"
# The receipt email and the order-paid notify hook.
NOTIFICATIONS: Final = "notifications"
# Scheduled HTTP requests: their dispatcher and each run.
SCHEDULES: Final = "schedules"
# Periodic sweeps: stalled jobs, job and table pruning, order expiry, owed deliveries.
MAINTENANCE: Final = "maintenance"
# CSV exports (long jobs that report progress).
EXPORTS: Final = "exports"
# procrastinate's own default: jobs deferred before the kiosk had queues, and anything else.
DEFAULT: Final = "default"

KIOSK_QUEUES: Final = (PAYMENTS, NOTIFICATIONS, SCHEDULES, MAINTENANCE, EXPORTS)
# Every queue an operator sees listed even before any job of it exists.
KNOWN: Final = (*KIOSK_QUEUES, DEFAULT)
