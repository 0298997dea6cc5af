"""Retention of the tables that grow with time: delete what is older than its setting, in batches.

Run hourly by the periodic task `retention.prune_tables` (periodic.py); jobs and their outcomes
have their own task, `jobs.prune_jobs` (kiosk/jobs/maintenance.py).

Each table, its setting (days, 0 = forever) and what goes:
- webhook_inbox, KIOSK_RETAIN_WEBHOOK_INBOX_DAYS: processed and ignored notifications; never a
  `received` one, nor one whose job still waits or runs.
- schedule_runs, KIOSK_RETAIN_SCHEDULE_RUNS_DAYS: runs whose tick is older, unless their job still
  waits or runs.
- exports (+ export_chunks), KIOSK_RETAIN_EXPORTS_DAYS: exports requested earlier, with their CSV,
  unless their job still waits or runs.
- admin_audit, KIOSK_RETAIN_AUDIT_DAYS: entries older.

Orders, their items, payment intents and deliveries are money records: kept (docs/workers.md
says why). Each table's delete is a named query of the package that owns the table; each batch of
KIOSK_PRUNE_BATCH_SIZE rows is its own short transaction that skips locked rows, so pruning a
large backlog never blocks the webhook path for long (docs/benchmarks.md#retention).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from kiosk import db
from kiosk.settings import get_settings
from kiosk.sql import load_queries

logger = logging.getLogger("kiosk.retention")


@dataclass(frozen=True)
class Table:
    name: str
    package: str  # owns the table and its `query`
    query: str
    setting: str  # Settings field: days kept, 0 = forever


TABLES = (
    Table("webhook_inbox", "kiosk.webhooks", "prune_inbox", "retain_webhook_inbox_days"),
    Table("schedule_runs", "kiosk.schedules", "prune_runs", "retain_schedule_runs_days"),
    Table("exports", "kiosk.exports", "prune_exports", "retain_exports_days"),
    Table("admin_audit", "kiosk.admin", "prune_audit", "retain_audit_days"),
)


async def prune_table(
    table: Table, days: float, *, batch_size: int, now: dt.datetime | None = None
) -> int:
    """Delete the table's rows past `days` (0: none), batch by batch; the number deleted."""
    if days <= 0:
        return 0
    query = load_queries(table.package)[table.query]
    params = {
        "before": (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days),
        "batch_size": batch_size,
    }
    deleted = 0
    while True:
        async with db.transaction() as conn:
            cursor = await conn.execute(query, params)
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted


async def prune_tables(
    *,
    days: dict[str, float] | None = None,
    batch_size: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Prune every table of TABLES with its setting (or `days[name]`); rows deleted per table."""
    settings = get_settings()
    batch_size = batch_size or settings.prune_batch_size
    result = {}
    for table in TABLES:
        table_days = (days or {}).get(table.name, getattr(settings, table.setting))
        result[table.name] = await prune_table(table, table_days, batch_size=batch_size, now=now)
    if any(result.values()):
        logger.info(
            "retention pruned %s", ", ".join(f"{n} {name} rows" for name, n in result.items() if n)
        )
    return result
