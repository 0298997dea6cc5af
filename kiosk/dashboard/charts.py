"""Bar charts as plain geometry for inline SVG: no JavaScript, no chart library.

`throughput_series` gives jobs finished per minute; the chart groups the window into a fixed
number of bars so that an hour and a day both draw 60 bars.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

WINDOWS = {60: "1 hour", 360: "6 hours", 1440: "24 hours"}
BARS = 60
WIDTH, HEIGHT = 600, 140
LEFT, BOTTOM, TOP = 40, 20, 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    kind: str  # css class: succeeded / failed
    total: int
    peak: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = BOTTOM


def bucket_counts(
    series: list[dict[str, Any]], key: str, minutes: int, now: dt.datetime
) -> tuple[dt.datetime, int, list[int]]:
    """(start, minutes per bar, counts per bar) over the `minutes` up to and including this one."""
    per_bar = max(1, minutes // BARS)
    end = now.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(minutes=per_bar * BARS)
    counts = [0] * BARS
    for row in series:
        index = int((row["minute"] - start).total_seconds() // 60) // per_bar
        if 0 <= index < BARS:
            counts[index] += int(row[key])
    return start, per_bar, counts


def bar_chart(
    series: list[dict[str, Any]], key: str, minutes: int, title: str, now: dt.datetime | None = None
) -> Chart:
    now = now or dt.datetime.now(dt.UTC)
    start, per_bar, counts = bucket_counts(series, key, minutes, now)
    peak = max(counts)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - TOP - BOTTOM
    slot = plot_w / BARS
    bars = []
    for i, count in enumerate(counts):
        if not count:
            continue
        h = max(1.0, plot_h * count / peak)
        at = start + dt.timedelta(minutes=i * per_bar)
        span = f"{at:%H:%M}" + (
            f"–{at + dt.timedelta(minutes=per_bar):%H:%M}" if per_bar > 1 else ""
        )
        bars.append(
            Bar(
                round(LEFT + i * slot + 0.5, 2),
                round(TOP + plot_h - h, 2),
                round(max(1.0, slot - 1), 2),
                round(h, 2),
                f"{span} UTC: {count} {key}",
            )
        )
    ticks = [
        (round(LEFT + i * slot, 2), f"{start + dt.timedelta(minutes=i * per_bar):%H:%M}")
        for i in (0, BARS // 4, BARS // 2, 3 * BARS // 4)
    ] + [(WIDTH, "now")]
    return Chart(title, key, sum(counts), peak, bars, ticks)
