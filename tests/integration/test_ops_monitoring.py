"""What monitoring/ ships holds together: promtool accepts the alerting rules and the scrape
configuration, Grafana's dashboard is valid JSON whose every query names a metric the services
export, and the alerts name only such metrics too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from auth_service import metrics as auth_metrics
from common.telemetry.metrics import registry_of
from gateway import metrics as gateway_metrics
from loyalty_service import metrics as loyalty_metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
# Series Prometheus makes itself, not the services.
SCRAPE_SERIES = {"up"}
_NAME = re.compile(r"\b((?:auth|loyalty|gateway|process|python)_[a-z0-9_]+|up)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool comes with Debian's prometheus package (scripts/system_deps.sh)"
    return found


def _exported(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def every_exported_series() -> set[str]:
    collectors = (auth_metrics.COLLECTORS, loyalty_metrics.COLLECTORS, gateway_metrics.COLLECTORS)
    return set().union(*(_exported(registry_of(c)) for c in collectors)) | SCRAPE_SERIES


def _names_in(expressions: list[str]) -> set[str]:
    # Label values ("POST /v1/promocodes/use", "auth|loyalty") are not metric names.
    bare = [re.sub(r'"[^"]*"', '""', expression) for expression in expressions]
    return {name for expression in bare for name in _NAME.findall(expression)}


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (MONITORING / "grafana" / "dashboards" / "loyalty.json").read_text()
    )
    return loaded


def test_promtool_accepts_the_alerting_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(MONITORING / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_promtool_accepts_the_scrape_configuration(tmp_path: Path) -> None:
    # The rule file's path is the container's; point it at the repository's copy.
    config = (MONITORING / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/alerts.yml", str(MONITORING / "alerts.yml"))
    )
    done = subprocess.run(
        [_promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("alert", ["OutboxNotDraining", "DeadLetters", "ReplicaDown"])
def test_the_alerts_the_issue_asks_for_are_there(alert: str) -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert alert in names
    assert {"GrpcErrorRatioHigh", "UseLatencyOverBudget"} <= names


def test_every_alert_names_metrics_the_services_export() -> None:
    named = _names_in(_alert_expressions())
    assert named and named <= every_exported_series(), named - every_exported_series()


def test_the_dashboard_loads_and_queries_only_exported_metrics() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "loyalty-platform" and dashboard["panels"]
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = _names_in(expressions)
    assert {
        "loyalty_outbox_oldest_age_seconds",
        "gateway_http_request_duration_seconds_bucket",
    } <= named
    assert named <= every_exported_series(), named - every_exported_series()


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["uid"] == "prometheus"
    boards = yaml.safe_load((provisioning / "dashboards" / "loyalty.yml").read_text())
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
