"""Replicas in the monitoring kit's queries (deploy/monitoring/, docs/metrics.md): every API replica
reports the database figures and counts every job itself, so those series are taken with `max`;
only this process's own series (kiosk.metrics.REGISTRY: HTTP latency, webhook counts) are summed.

promtool proves the alerts with replicas (alerts_test.yml, tests/integration/test_monitoring.py);
this checks the shape of every query, the dashboard's and the docs' included, without promtool.
"""

from __future__ import annotations

import re

import pytest

from kiosk import metrics
from tests.support.monitoring import alert_rules, doc_queries, panel_queries

PER_PROCESS = tuple(family.name for family in metrics.REGISTRY.collect())
# What a kiosk series is read through: an aggregation, then at most one function (rate(...),
# increase(...), min_over_time(...)) right before the series name.
WRAPPER = re.compile(
    r"\b(?P<op>max|sum|min|avg|count)\s*(?:(?P<mod>by|without)\s*\((?P<labels>[^)]*)\)\s*)?\(\s*(?:\w+\(\s*)?$"
)


def kit_queries() -> dict[str, str]:
    queries = {
        f"alert {rule.get('alert') or rule['record']}": rule["expr"] for rule in alert_rules()
    }
    for title, exprs in panel_queries().items():
        queries |= {f"panel {title!r} #{n}": expr for n, expr in enumerate(exprs)}
    queries |= {f"docs/metrics.md #{n}": expr for n, expr in enumerate(doc_queries())}
    return queries


def problems(expr: str) -> list[str]:
    """Each kiosk series in `expr` read in a way that miscounts with several replicas."""
    found = []
    for series in re.finditer(r"\bkiosk_[a-z_]+\b", expr):
        name = series.group()
        wrapper = WRAPPER.search(expr[: series.start()])
        own = name.startswith(PER_PROCESS)
        if own and (wrapper is None or wrapper["op"] != "sum"):
            found.append(f"{name}: each process's own, sum it")
        elif not own and (wrapper is None or wrapper["op"] != "max" or wrapper["mod"] == "without"):
            found.append(f"{name}: the same in every replica, take `max by` its labels")
        elif not own and "instance" in (wrapper["labels"] or ""):
            found.append(f"{name}: `by (instance)` keeps one copy per replica")
    return found


def test_the_docs_have_queries() -> None:
    assert len(doc_queries()) >= 10


@pytest.mark.parametrize("where", sorted(kit_queries()))
def test_replicas_are_counted_once(where: str) -> None:
    expr = kit_queries()[where]
    assert problems(expr) == [], expr


def test_the_check_catches_each_mistake() -> None:
    assert problems("sum by (task) (rate(kiosk_job_duration_seconds_count[5m]))")
    assert problems("sum by (queue) (kiosk_jobs)")
    assert problems("max without (instance) (kiosk_jobs)")
    assert problems("max by (instance, queue) (kiosk_jobs)")
    assert problems("kiosk_workers == 0")
    assert problems("max(rate(kiosk_webhook_notifications_total[5m]))")
    assert not problems("max by (task, status) (rate(kiosk_job_duration_seconds_count[5m]))")
    assert not problems("sum(rate(kiosk_http_request_duration_seconds_count[5m]))")
