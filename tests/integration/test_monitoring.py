"""The monitoring kit (deploy/monitoring/): promtool checks, the alerts' unit tests, and a real
Prometheus scraping a running kiosk that evaluates every dashboard query and alert expression."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml

from tests.support import wait_for
from tests.support.config import ADMIN_TOKEN, TERMINAL
from tests.support.monitoring import (
    MISSING,
    MONITORING,
    PROMETHEUS,
    PROMTOOL,
    Prometheus,
    alert_rules,
    doc_queries,
    family_names,
    finite,
    kit_metric_names,
    local_config,
    panel_queries,
    promtool,
)
from tests.support.stack import notify, rows

pytestmark = pytest.mark.skipif(not (PROMTOOL and PROMETHEUS), reason=MISSING)

# The panels an operator opens first: each must show numbers after some traffic, above zero but
# for the queue depth (every job may have run already).
MAIN_PANELS = {
    "Queue depth (waiting jobs)": 0.0,
    "Job attempts per second": 1e-9,
    "Wait before start (p50, p95) per queue": 1e-9,
    "Notifications by outcome": 1e-9,
    "Webhook answers by status": 1e-9,
    "Workers": 1.0,
}


def test_promtool_checks_the_scrape_config(tmp_path):
    syntax = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    # In full (the rule files, the token file): the same file with a token file that exists here.
    full = promtool("check", "config", str(local_config(tmp_path, "127.0.0.1:8000", "t")))
    assert full.returncode == 0, full.stdout + full.stderr
    assert "SUCCESS" in full.stdout


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr

    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    cases = [
        case
        for test in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts == fires == quiet, (alerts - fires, alerts - quiet)


def test_every_series_the_kit_reads_is_in_the_metrics_docs():
    """What an operator reads in an alert or a panel is documented (docs/metrics.md)."""
    documented = (MONITORING.parents[1] / "docs" / "metrics.md").read_text()
    suffixes = ("_bucket", "_count", "_sum")
    used = {next((n[: -len(s)] for s in suffixes if n.endswith(s)), n) for n in kit_metric_names()}
    missing = {name for name in used if f"`{name}`" not in documented}
    assert used and not missing, missing


def test_a_real_prometheus_evaluates_every_panel_and_alert(
    kiosk, sim, start_worker, database_url, tmp_path, log_dir
):
    host = kiosk.url.removeprefix("http://")
    config = local_config(tmp_path, host, ADMIN_TOKEN)  # the stack's metrics token is the admin's
    prometheus = Prometheus(config, tmp_path, log_dir)
    try:
        wait_for(
            lambda: prometheus.query('up{job="kiosk"} == 1'),
            timeout=60,
            what=f"prometheus to scrape kiosk:\n{prometheus.output()}",
        )

        # Traffic: a paid order (its webhook, processing job, receipt and hook jobs) and refused
        # notifications, before and after it: a counter's first value only starts its series,
        # rate() needs it to grow while Prometheus watches.
        assert notify(kiosk.url, "ORD-unknown", 1, secret="wrong").status_code == 401
        wait_for(
            lambda: prometheus.query('kiosk_webhook_notifications_total{outcome="bad_signature"}'),
            timeout=30,
            what="the first refused notification scraped",
        )
        kiosk.product("coffee", price_cents=250, stock=10)
        start_worker()

        def paid_order() -> None:
            order = kiosk.order({"coffee": 1})
            assert kiosk.pay(order["id"]).status_code == 201
            sim.tap(TERMINAL, "approve")
            wait_for(lambda: kiosk.status_is(order["id"], "paid"), timeout=60, what="order paid")
            wait_for(
                lambda: (
                    {r["state"] for r in rows(database_url, "SELECT state FROM order_deliveries")}
                    == {"sent"}
                ),
                timeout=60,
                what="receipt and hook sent",
            )

        paid_order()
        # The job counters' series start with the first order's jobs; a second order's jobs make
        # them grow while Prometheus watches (else rate() waits for the next minute's periodic
        # jobs to grow a series).
        task = 'task="payments.process_notification"'
        wait_for(
            lambda: (
                prometheus.query(f"kiosk_job_duration_seconds_count{{{task}}}")
                and prometheus.query(f"kiosk_job_wait_seconds_count{{{task}}}")
            ),
            timeout=60,
            what="the first order's job counters scraped",
        )
        paid_order()
        assert notify(kiosk.url, "ORD-unknown", 2, secret="wrong").status_code == 401

        # Every dashboard query and every alert and recording rule evaluates without error
        # while the main panels fill up (job counters settle 5 s after the job, then a scrape).
        queries = panel_queries()
        seen: set[str] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and seen != set(MAIN_PANELS):
            for title, least in MAIN_PANELS.items():
                if any(finite(prometheus.query(expr), least) for expr in queries[title]):
                    seen.add(title)
            time.sleep(1)
        assert seen == set(MAIN_PANELS), f"panels without data: {set(MAIN_PANELS) - seen}"
        for exprs in queries.values():
            for expr in exprs:
                prometheus.query(expr)
        for rule in alert_rules():
            prometheus.query(rule["expr"])
        for expr in doc_queries():  # docs/metrics.md's examples
            prometheus.query(expr)

        # Prometheus itself evaluates the rule files: every rule ran, none failed.
        def evaluated() -> list[dict]:
            groups = prometheus.api("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            done = all(rule["lastEvaluation"] > "2000" for rule in rules)
            return rules if done and len(rules) == len(alert_rules()) else []

        for rule in wait_for(evaluated, timeout=30, what="every rule evaluated"):
            assert rule["health"] == "ok", rule
        # A healthy kiosk with a live worker: the worker, webhook and money alerts' conditions
        # hold for nothing (their `for` outlasts this test, so the condition is what is checked).
        quiet = {
            "KioskNoLiveWorker",
            "KioskStalledJobs",
            "KioskWebhook503",
            "KioskUnresolvedCharges",
            "KioskRefundsFailed",
            "KioskDeliveriesFailed",
        }
        for rule in alert_rules():
            if rule.get("alert") in quiet:
                assert prometheus.query(rule["expr"]) == [], rule["alert"]
        (target,) = prometheus.api("targets")["activeTargets"]  # the kit's one job, on kiosk
        assert target["labels"]["job"] == "kiosk" and target["scrapeUrl"] == f"{kiosk.url}/metrics"
        assert httpx.get(f"{kiosk.url}/metrics").status_code == 401  # Prometheus used the token

        # Every series the kit reads is one kiosk exposes (a typo would just show nothing).
        exposition = httpx.get(
            f"{kiosk.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).text
        assert kit_metric_names() <= family_names(exposition), kit_metric_names() - family_names(
            exposition
        )
    finally:
        prometheus.stop()
