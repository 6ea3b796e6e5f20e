"""Metrics checked by promtool and scraped by a real Prometheus server on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.kafka_broker import free_port
from tests.test_demo_and_metrics import start_demo, wait_health

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def demo_port(tmp_path_factory):
    import os
    import sys

    proc, port = start_demo(os.path.join(os.path.dirname(sys.executable), "stormwatch"), "--speed", "0",
                            "--minutes", "20")
    wait_health(port, proc, alerts=3)
    yield port
    proc.terminate()
    proc.communicate(timeout=30)


def test_promtool_accepts_the_exposition(demo_port: int) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/ensure-tools installs Debian's prometheus"
    body = httpx.get(f"http://127.0.0.1:{demo_port}/metrics").content
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert done.returncode == 0 and done.stdout.strip() == b"" and done.stderr.strip() == b"", done
    for series in (b"stormwatch_events_total", b"stormwatch_deadletter", b"stormwatch_alerts_total",
                   b"stormwatch_processing_seconds_bucket", b"stormwatch_webhook_deliveries"):
        assert series in body


def test_a_real_prometheus_scrapes_the_demo(demo_port: int, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is missing: scripts/ensure-tools installs it"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: stormwatch
    static_configs:
      - targets: ["127.0.0.1:{demo_port}"]
""")
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query",
                                   params={"query": 'stormwatch_alerts_total{kind="order_refused"}'}).json()
                result = answer["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                continue
        assert result, "Prometheus never scraped the demo"
        assert result[0]["value"][1] == "1" and result[0]["metric"]["job"] == "stormwatch"
    finally:
        proc.terminate()
        proc.wait(30)
