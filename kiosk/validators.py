"""Value checks shared by the settings and the domain: a leaf module (it imports nothing of kiosk).

`kiosk.settings` validates its values with these, so it never imports a domain module (which
imports the settings back); the domain modules that own a concept re-export what they use
(`kiosk.payments.mercadopago.parse_duration`, `kiosk.orders.store.is_email`, ...).
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet

# A deliverable-looking address with nothing that could break an email header.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
EMAIL = re.compile(rf"^[^@\s<>\"',;]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")

# Mercado Pago ids end up in URL paths: only these characters are ever sent.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The expiration Mercado Pago accepts for a charge on a terminal, in seconds.
MIN_EXPIRATION, MAX_EXPIRATION = 30, 3 * 3600
_DURATION = re.compile(r"^PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$", re.IGNORECASE)


def is_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL.fullmatch(value) is not None


def parse_duration(value: str) -> int:
    """Seconds in an ISO-8601 time duration such as `PT5M` or `PT1H30M`."""
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an ISO-8601 duration such as PT5M")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{seconds}S" if seconds or text == "PT" else "")


def parse_keys(value: str) -> list[str]:
    """The keys of a KIOSK_SECRET_KEY value, each checked; ValueError names a bad one's position."""
    keys = [item.strip() for item in value.split(",") if item.strip()]
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the value: it is (meant to be) a key.
            raise ValueError(
                f"key {position} is not a Fernet key (32 bytes in url-safe base64, 44 characters; "
                "make one with `kiosk secret-key`)"
            ) from None
    return keys


# Queues (kiosk/queues, docs/workers.md "Queue controls"): the names the kiosk_queue_controls table
# accepts, and the bounds of a queue's limits.
QUEUE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_QUEUE_LIMIT = 10_000
_LIMIT_KEYS = ("max_per_second", "max_running")


def queue_name_problem(name: str) -> str | None:
    """Why `name` is not a queue name, or None."""
    if QUEUE_NAME.fullmatch(name):
        return None
    return f"{name[:80]!r} is not a queue name: 1 to 64 letters, digits, '.', '_' or '-'"


def max_per_second_problem(value: object) -> str | None:
    """Why `value` is not a rate limit (jobs started per second, across all workers), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "max_per_second must be a number or null"
    if not 0 < value <= MAX_QUEUE_LIMIT:  # also refuses NaN and infinities
        return f"max_per_second must be above 0 and at most {MAX_QUEUE_LIMIT}, got {value}"
    return None


def max_running_problem(value: object) -> str | None:
    """Why `value` is not a cap on running jobs (across all workers), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return "max_running must be a whole number or null"
    if not 1 <= value <= MAX_QUEUE_LIMIT:
        return f"max_running must be between 1 and {MAX_QUEUE_LIMIT}, got {value}"
    return None


def parse_queue_limits(text: str) -> dict[str, tuple[float | None, int | None]]:
    """KIOSK_QUEUE_LIMITS: `queue:key=value,key=value;queue:...` -> {queue: (max_per_second,
    max_running)}. Keys: max_per_second (a number), max_running (a whole number); a key left out
    is no limit. Whitespace around parts is ignored; ValueError names the bad part."""
    limits: dict[str, tuple[float | None, int | None]] = {}
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        queue, colon, body = (part.strip() for part in entry.partition(":"))
        if not colon or not body:
            raise ValueError(
                f"{entry[:80]!r} is not `queue:max_per_second=N,max_running=N` "
                "(entries separated by ';')"
            )
        problem = queue_name_problem(queue)
        if problem:
            raise ValueError(problem)
        if queue in limits:
            raise ValueError(f"queue {queue!r} is listed twice")
        values: dict[str, float | int] = {}
        for item in (part.strip() for part in body.split(",")):
            key, equals, raw = (part.strip() for part in item.partition("="))
            if key not in _LIMIT_KEYS or not equals:
                raise ValueError(f"{queue}: {item[:80]!r} is not max_per_second=N or max_running=N")
            if key in values:
                raise ValueError(f"{queue}: {key} is given twice")
            try:
                number: float | int = int(raw) if key == "max_running" else float(raw)
            except ValueError:
                number = raw  # type: ignore[assignment]  # reported as not a number just below
            problem = (
                max_running_problem(number)
                if key == "max_running"
                else max_per_second_problem(number)
            )
            if problem:
                raise ValueError(f"{queue}: {problem}")
            values[key] = number
        rate = values.get("max_per_second")
        running = values.get("max_running")
        limits[queue] = (
            float(rate) if rate is not None else None,
            int(running) if running is not None else None,
        )
    return limits
