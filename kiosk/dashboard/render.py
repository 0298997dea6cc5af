"""Jinja2 environment and the formatting filters the templates use.

Autoescape is on for every template: job arguments, queue names and audit details are data from
outside and are shown only as text.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import jinja2

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("kiosk.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def ts(value: dt.datetime | None) -> str:
    """UTC, to the second: operators compare these with logs."""
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def duration(seconds: float | None) -> str:
    """A run time: milliseconds under a second, then seconds, then as `age`."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return age(seconds)


def since(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return age((dt.datetime.now(dt.UTC) - value).total_seconds())


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def short_json(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def url(path: str, params: dict[str, Any] | None = None, **more: Any) -> str:
    """`path?query` with empty values left out."""
    merged = {**(params or {}), **more}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


_env.filters.update(
    ts=ts, age=age, duration=duration, since=since, pretty_json=pretty_json, short_json=short_json
)
_env.globals.update(url=url)


def render(template: str, context: dict[str, Any]) -> str:
    return _env.get_template(template).render(context)
