"""The monitoring kit in tests (deploy/monitoring/): its files, promtool, a real Prometheus server.

Prometheus and promtool come from Debian's `prometheus` package (.ci/run installs it). The server
runs on a free loopback port with its own storage in a temporary directory, with the project's
prometheus.yml and alerts.yml, only the target, the token file and the intervals changed.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import HTTP, PROJECT_DIR, Process, free_port, wait_for

MONITORING = PROJECT_DIR / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
MISSING = (
    "promtool/prometheus not installed: `apt-get install prometheus` (Debian's package; "
    ".ci/run installs it)"
)
# What Grafana puts in place of its variables, for asking Prometheus directly.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, MISSING
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "grafana" / "dashboards" / "kiosk.json").read_text())


def panel_queries() -> dict[str, list[str]]:
    """Every dashboard panel's PromQL, Grafana's variables replaced, by panel title."""
    queries: dict[str, list[str]] = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
            queries.setdefault(panel["title"], []).append(expr)
    return queries


def doc_queries() -> list[str]:
    """The example queries of docs/metrics.md (its `promql` blocks), one a line, comments off."""
    text = (PROJECT_DIR / "docs" / "metrics.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def local_config(directory: Path, target: str, token: str, interval: str = "1s") -> Path:
    """The project's prometheus.yml for a test: this target and token file, short intervals."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    token_file = directory / "metrics-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(MONITORING / name) for name in config["rule_files"]]
    (scrape,) = config["scrape_configs"]
    scrape["authorization"]["credentials_file"] = str(token_file)
    scrape["static_configs"] = [{"targets": [target]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus(Process):
    """`prometheus` on a free loopback port with its storage in `directory`."""

    def __init__(self, config: Path, directory: Path, log_dir: Path):
        assert PROMETHEUS, MISSING
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
        ]
        super().__init__("prometheus", argv, {}, log_dir)
        wait_for(self._ready, timeout=60, what=f"prometheus on {self.url}")

    def _ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"prometheus exited:\n{self.output()}")
        return HTTP.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def api(self, path: str, **params: str) -> Any:
        response = HTTP.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector), failing on any error or warning."""
        response = HTTP.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        assert not body.get("warnings"), (expr, body["warnings"])
        assert body["data"]["resultType"] == "vector", (expr, body["data"]["resultType"])
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def finite(result: list[dict[str, Any]], least: float = 0.0) -> bool:
    """Whether a query result holds a number of at least `least` (not NaN: a quantile of no
    events)."""
    values = [float(sample["value"][1]) for sample in result]
    return any(math.isfinite(value) and value >= least for value in values)


def metric_names(expr: str) -> set[str]:
    """The kiosk series names a PromQL expression reads (`kiosk_...`, recording rules aside)."""
    return set(re.findall(r"\b(kiosk_[a-z_]+)\b", expr))


def kit_metric_names() -> set[str]:
    """Every kiosk series name the alerts and the dashboard read."""
    names = {name for rule in alert_rules() for name in metric_names(rule["expr"])}
    for exprs in panel_queries().values():
        names |= {name for expr in exprs for name in metric_names(expr)}
    return names


def family_names(exposition: str) -> set[str]:
    """The series names a /metrics text can hold: each family's, with a histogram's suffixes."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names
