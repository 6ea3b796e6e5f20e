"""The regulator's dashboard in real headless Chromium: it loads, and shows the demo's data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kafka_broker import free_port
from tests.test_demo_and_metrics import wait_health

pytestmark = pytest.mark.tools
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture(scope="module")
def demo():
    port = free_port()
    env = {**os.environ, "STORMWATCH_API_TOKENS": json.dumps({"reg-token": {"role": "regulator"}})}
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "stormwatch"), "demo", "--speed", "0",
                             "--minutes", "30", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_health(port, proc, alerts=5)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


def chromium(url: str, tmp_path: Path, *extra: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: scripts/ensure-tools installs Debian's chromium"
    done = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1100",
                           "--virtual-time-budget=8000", *extra, url], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.decode()


def test_the_dashboard_shows_orders_refusals_scorecards_campaigns_and_legal_figures(demo: str, tmp_path: Path) -> None:
    dom = chromium(f"{demo}/dashboard#token=reg-token", tmp_path, "--dump-dom")
    assert 'data-loaded="true"' in dom
    for expected in ("order-rumor", "order-tag", "overdue", "order_refused", "continued_dissemination",
                     "campaign-", "defamation_views_5000", "defamation_reposts_500", "marketing_followers_30000"):
        assert expected in dom, expected
    assert "<td>weibo</td><td>3</td>" in dom  # the scorecard row: three orders received


def test_without_a_token_the_dashboard_shows_no_data(demo: str, tmp_path: Path) -> None:
    dom = chromium(f"{demo}/dashboard", tmp_path, "--dump-dom")
    assert "HTTP 401" in dom and "order-rumor" not in dom and 'data-loaded="true"' not in dom


def test_a_screenshot_for_the_docs(demo: str, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    chromium(f"{demo}/dashboard#token=reg-token", tmp_path, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_campaigns_and_cascades_endpoints(demo: str) -> None:
    import httpx

    auth = {"Authorization": "Bearer reg-token"}
    campaigns = httpx.get(f"{demo}/api/campaigns", headers=auth).json()
    assert campaigns and all(acc.startswith("army") for acc in campaigns[0]["evidence"]["accounts"])
    cascades = httpx.get(f"{demo}/api/cascades", headers=auth).json()
    rumor = next(c for c in cascades if c["post_id"] == "rumor-1")
    assert sorted(rumor["figures_crossed"]) == ["defamation_reposts_500", "defamation_views_5000"]
