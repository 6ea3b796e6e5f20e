"""Alerts reach a real Prometheus Alertmanager on 127.0.0.1, read back through its API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.kafka_broker import free_port
from tests.test_demo_and_metrics import wait_health

pytestmark = pytest.mark.tools


@pytest.fixture
def alertmanager(tmp_path: Path):
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "Alertmanager is missing: scripts/ensure-tools installs Debian's prometheus-alertmanager"
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n")
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)


def test_demo_alerts_fire_in_alertmanager_and_are_kept_active(alertmanager: str) -> None:
    port = free_port()
    env = {**os.environ, "STORMWATCH_ALERTMANAGER__URL": alertmanager, "STORMWATCH_ALERTMANAGER__RESEND_S": "1"}
    stormwatch = os.path.join(os.path.dirname(sys.executable), "stormwatch")
    proc = subprocess.Popen([stormwatch, "demo", "--speed", "0", "--minutes", "20", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def refused_ends_at(alerts: list[dict]) -> str | None:
        return next((a["endsAt"] for a in alerts if a["labels"].get("kind") == "order_refused"), None)

    try:
        wait_health(port, proc, alerts=3)
        first, resent, firing = None, None, []
        deadline = time.monotonic() + 20
        while resent is None and time.monotonic() < deadline:
            firing = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": 'source="stormwatch"'}).json()
            ends = refused_ends_at(firing)
            if first is None:
                first = ends
            elif ends is not None and ends > first:
                resent = ends
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(30)
    # kept active: a re-send (RESEND_S = 1) moved endsAt forward while the demo ran
    assert first is not None and resent is not None, (first, resent)
    by_kind = {}
    for alert in firing:
        by_kind.setdefault(alert["labels"]["kind"], []).append(alert)
    assert {"order_overdue", "order_refused", "water_army_campaign", "legal_threshold"} <= set(by_kind)
    refused = by_kind["order_refused"][0]
    assert refused["labels"]["subject"] == "order-tag" and refused["labels"]["platform"] == "weibo"
    assert refused["labels"]["severity"] == "critical" and refused["status"]["state"] == "active"
    assert "Criminal Law Art. 286-1" in refused["annotations"]["legal_refs"]
    assert refused["annotations"]["alert_id"].startswith("order_refused-")
