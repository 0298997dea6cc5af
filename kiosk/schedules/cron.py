"""Cron expressions of schedules: parsing, next run times and the ticks inside a window.

Five fields (`minute hour day-of-month month day-of-week`) or six with **seconds first**
(`second minute hour ...`, as node-cron and Quartz write it), plus croniter's `@hourly`-style
aliases. Ticks are computed in the schedule's IANA time zone and returned as aware datetimes in
that zone; the database stores them as `timestamptz`, so a tick is one instant everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class InvalidCron(ValueError):
    """The cron expression or the time zone cannot be used."""


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _iter(self, start: dt.datetime) -> croniter:
        return croniter(self.expression, start.astimezone(self.zone), second_at_beginning=True)

    def next_runs(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        it = self._iter(after)
        return [it.get_next(dt.datetime) for _ in range(count)]

    def ticks(self, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
        """Ticks t with after < t <= until, oldest first."""
        it = self._iter(after)
        while (tick := it.get_next(dt.datetime)) <= until:
            yield tick

    def ticks_back(self, before: dt.datetime, after: dt.datetime) -> Iterator[dt.datetime]:
        """Ticks t with after < t <= before, newest first."""
        it = self._iter(before + dt.timedelta(microseconds=1))
        while (tick := it.get_prev(dt.datetime)) > after:
            yield tick


def parse(expression: str, timezone: str) -> Cron:
    """A usable Cron, or InvalidCron saying why (wrong fields, unknown zone, never fires)."""
    expression = " ".join(expression.split())
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCron(
            f"unknown time zone {timezone!r}; use an IANA name like 'Europe/Madrid'"
        ) from None
    fields = expression.split(" ")
    if expression.startswith("@"):
        if expression.lower() not in ALIASES:
            raise InvalidCron(f"unknown cron alias {expression!r}; use one of {', '.join(ALIASES)}")
    elif len(fields) not in (5, 6):
        raise InvalidCron(
            f"cron expression {expression!r} has {len(fields)} fields; use 5 "
            "(minute hour day month weekday) or 6 with seconds first"
        )
    try:
        croniter(expression, dt.datetime.now(zone), second_at_beginning=True)
    except CroniterError as exc:
        raise InvalidCron(f"invalid cron expression {expression!r}: {exc}") from None
    cron = Cron(expression, timezone)
    try:
        cron.next_runs(dt.datetime.now(dt.UTC), 1)
    except CroniterBadDateError:
        raise InvalidCron(f"cron expression {expression!r} never fires") from None
    return cron
