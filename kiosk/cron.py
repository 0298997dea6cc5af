"""Cron expressions, one dialect for the whole product: parsing, checking, next run times, ticks.

A leaf module (it imports nothing of kiosk): the settings check their periodic crons with it and
the schedules compute their ticks with it.

The dialect is procrastinate's (and croniter's default): five fields
(`minute hour day-of-month month day-of-week`), or six with the **seconds last**
(`minute hour day-of-month month day-of-week second`: `* * * * * */10` is every ten seconds),
plus the `@hourly`-style aliases. The settings' crons go to procrastinate's periodic tasks
unchanged (the worker's own scheduler reads them), so they can only be written its way; schedules
were written seconds first until migration 0022 moved their seconds last.

A six-field expression whose seconds field is `*` while another field is not (`*/30 * * * * *`)
is refused: it would fire every second of some minutes, which no kiosk job wants, and it is what
a seconds-first expression reads as in this dialect.

Ticks are computed in the schedule's IANA time zone and returned as aware datetimes in that zone;
the database stores them as `timestamptz`, so a tick is one instant everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
DIALECT = "5 fields (minute hour day month weekday) or 6 with the seconds last"


class InvalidCron(ValueError):
    """The cron expression or the time zone cannot be used; the message says why."""


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _iter(self, start: dt.datetime) -> croniter:
        return croniter(self.expression, start.astimezone(self.zone))

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


def seconds_first_to_last(expression: str) -> str:
    """A six-field expression written seconds first, with its seconds moved last (what migration
    0022 does to stored schedules); any other expression unchanged."""
    fields = expression.split()
    if len(fields) != 6 or expression.lstrip().startswith("@"):
        return expression
    return " ".join([*fields[1:], fields[0]])


def check_expression(expression: str) -> str:
    """The expression normalised (single spaces), or InvalidCron saying why: wrong number of
    fields, a field croniter refuses, an unknown alias, a seconds-first leftover."""
    expression = " ".join(expression.split())
    if expression.startswith("@"):
        if expression.lower() not in ALIASES:
            raise InvalidCron(f"unknown cron alias {expression!r}; use one of {', '.join(ALIASES)}")
        return expression
    fields = expression.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidCron(f"cron expression {expression!r} has {len(fields)} fields; use {DIALECT}")
    if len(fields) == 6 and fields[5] == "*" and set(fields[:5]) != {"*"}:
        raise InvalidCron(
            f"cron expression {expression!r} would fire every second of some minutes: the "
            f"seconds come last (written seconds first, it is "
            f"{seconds_first_to_last(expression)!r})"
        )
    try:
        croniter(expression)
    except CroniterError as exc:
        raise InvalidCron(f"invalid cron expression {expression!r}: {exc}") from None
    return expression


def parse(expression: str, timezone: str) -> Cron:
    """A usable Cron, or InvalidCron saying why (wrong fields, unknown zone, never fires)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCron(
            f"unknown time zone {timezone!r}; use an IANA name like 'Europe/Madrid'"
        ) from None
    cron = Cron(check_expression(expression), timezone)
    try:
        cron.next_runs(dt.datetime.now(dt.UTC), 1)
    except CroniterBadDateError:
        raise InvalidCron(f"cron expression {cron.expression!r} never fires") from None
    return cron
