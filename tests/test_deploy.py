"""docker-compose.yml for users, checked offline with Debian's docker-compose 1.29."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def compose() -> dict:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: scripts/ensure-tools installs it"
    done = subprocess.run([tool, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resolved = subprocess.run([tool, "config"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(resolved)


def test_compose_has_kafka_two_workers_prometheus_and_grafana(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["command"] == ["worker"]
        assert worker["environment"]["STORMWATCH_BROKER"] == "kafka://kafka:9092"
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_prometheus_scrapes_both_workers_and_grafana_is_provisioned() -> None:
    scrape = (ROOT / "deploy/prometheus.yml").read_text()
    assert "worker-1:6066" in scrape and "worker-2:6066" in scrape
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "url: http://prometheus:9090" in datasource
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/stormwatch.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for series in ("stormwatch_events_total", "stormwatch_deadletter_total", "stormwatch_alerts_total",
                   "stormwatch_processing_seconds_bucket", "stormwatch_webhook_deliveries_total",
                   "stormwatch_consumer_lag"):
        assert series in exprs
