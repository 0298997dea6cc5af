"""A few Prometheus metric types and the text exposition format (version 0.0.4).

Small on purpose: counters, gauges and histograms with labels are all kiosk needs, and writing them
keeps the request path free of a dependency's locks and registries. Everything here lives in one
process; values computed from the database are rebuilt at each scrape.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

Labels = tuple[tuple[str, str], ...]

# Seconds: from a fast webhook acknowledgement to a slow export.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)

    def key(self, values: Sequence[str]) -> Labels:
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}")
        return tuple(zip(self.label_names, (str(v) for v in values)))

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Gauge(Metric):
    """A value set at each scrape (replaced whole, so vanished label sets disappear)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()):
        super().__init__(name, help_text, label_names)
        self.values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        self.values[self.key(labels)] = float(value)

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]


class Counter(Gauge):
    """Only goes up (within this process)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        key = self.key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS):
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[Labels, list[float]] = {}  # per bucket counts, then +Inf count, then sum

    def _row(self, labels: Sequence[str]) -> list[float]:
        key = self.key(labels)
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        return row

    def observe(self, value: float, *labels: str) -> None:
        row = self._row(labels)
        index = bisect.bisect_left(self.buckets, value)
        row[index] += 1  # index == len(buckets): only +Inf
        row[-1] += value

    def add_counts(self, counts: Iterable[float], total: float, *labels: str) -> None:
        """Merge pre-bucketed (non-cumulative) counts, +Inf last, e.g. aggregated in SQL."""
        row = self._row(labels)
        for index, count in enumerate(counts):
            row[index] += count
        row[-1] += total

    def lines(self) -> list[str]:
        out = []
        for key, row in sorted(self.series.items()):
            cumulative = 0.0
            for bound, count in zip(self.buckets, row):
                cumulative += count
                out.append(f"{self.name}_bucket{_labels(key, (('le', _number(bound)),))} {_number(cumulative)}")
            cumulative += row[len(self.buckets)]
            out.append(f'{self.name}_bucket{_labels(key, (("le", "+Inf"),))} {_number(cumulative)}')
            out.append(f"{self.name}_count{_labels(key)} {_number(cumulative)}")
            out.append(f"{self.name}_sum{_labels(key)} {_number(row[-1])}")
        return out


def render(metrics: Iterable[Metric]) -> str:
    out: list[str] = []
    for metric in metrics:
        out += metric.header()
        out += metric.lines()
    return "\n".join(out) + "\n"
