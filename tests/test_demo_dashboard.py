"""``stormwatch demo`` opens the dashboard for you (a one-time regulator token in the printed
URL's fragment when no token is configured), and runs with any subset of the detectors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.kafka_broker import free_port
from tests.test_demo_and_metrics import wait_health

URL = re.compile(r"http://127\.0\.0\.1:\d+/dashboard(#token=[A-Za-z0-9_-]+)?")


def start(bin_: str, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, int, str, str]:
    """A demo, its port, the dashboard URL it printed and the line it is on."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("STORMWATCH_API_TOKENS", "STORMWATCH_DETECTORS")}
    proc = subprocess.Popen([bin_, "demo", "--port", str(port), "--speed", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**clean, "COLUMNS": "100", **env})
    seen = []
    for raw in proc.stdout:  # the URL is printed before the feed starts
        seen.append(raw.decode())
        found = URL.search(seen[-1])
        if found:
            return proc, port, found[0], seen[-1]
    raise AssertionError("no dashboard URL printed:\n" + "".join(seen))


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)[0].decode()


def test_without_tokens_the_demo_prints_a_dashboard_url_with_a_one_time_regulator_token(stormwatch_bin: str,
                                                                                        tmp_path) -> None:
    src = tmp_path / "one.jsonl"
    src.write_text('{"type": "tick", "ts": "2026-01-01T00:00:00Z"}\n')
    proc, port, url, _line = start(stormwatch_bin, {}, "--replay", str(src))
    try:
        wait_health(port, proc, alerts=0)
        parts = urlsplit(url)
        token = parts.fragment.removeprefix("token=")
        assert parts.port == port and parts.path == "/dashboard" and len(token) >= 32
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{base}/api/orders", headers={"Authorization": "Bearer guess"}).status_code == 401
        assert httpx.get(f"{base}/api/orders").status_code == 401
    finally:
        stop(proc)
    # A second run makes another token: it is good for one run only.
    proc, _port, again, _line = start(stormwatch_bin, {}, "--replay", str(src))
    stop(proc)
    assert again != url and "#token=" in again


def test_with_tokens_configured_the_demo_makes_none(stormwatch_bin: str, tmp_path) -> None:
    src = tmp_path / "one.jsonl"
    src.write_text('{"type": "tick", "ts": "2026-01-01T00:00:00Z"}\n')
    env = {"STORMWATCH_API_TOKENS": json.dumps({"mine": {"role": "regulator"}})}
    proc, port, url, line = start(stormwatch_bin, env, "--replay", str(src))
    try:
        wait_health(port, proc, alerts=0)
        assert url == f"http://127.0.0.1:{port}/dashboard"
        assert httpx.get(f"http://127.0.0.1:{port}/api/orders", headers={"Authorization": "Bearer mine"}).json() == []
    finally:
        out = stop(proc)
    assert "#token=" not in out + line and "STORMWATCH_API_TOKENS" in line


@pytest.mark.parametrize("subset, kinds", [
    ("cascades", {"viral_spread", "legal_threshold", "illegal_marketing"}),
    ("water_army,targets,post_targets", {"water_army_campaign", "violence_surge"}),
])
def test_the_demo_runs_with_a_subset_of_the_detectors(stormwatch_bin: str, subset: str, kinds: set[str]) -> None:
    proc, port, url, _line = start(stormwatch_bin, {"STORMWATCH_DETECTORS": subset}, "--minutes", "25")
    try:
        wait_health(port, proc, alerts=2, timeout=120)
        auth = {"Authorization": "Bearer " + url.split("#token=")[1]}
        alerts = httpx.get(f"http://127.0.0.1:{port}/api/alerts", headers=auth).json()
        orders = httpx.get(f"http://127.0.0.1:{port}/api/orders", headers=auth)
        scorecard = httpx.get(f"http://127.0.0.1:{port}/api/platforms/weibo/scorecard", headers=auth)
    finally:
        out = stop(proc)
    assert {a["kind"] for a in alerts} == kinds, out
    assert orders.status_code == 200 and orders.json() == []  # no ledger: no orders, not a crash
    assert scorecard.status_code == 200 and scorecard.json()["orders_received"] == 0
    assert "Traceback" not in out and "done:" in out


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The demo on twenty simulated minutes (a campaign that grows over several versions)."""
    from commands.simulator import SimConfig, simulate_lines
    from tests.support.demo import demo_serving

    src = tmp_path_factory.mktemp("sim") / "sim.jsonl"
    src.write_bytes(b"\n".join(simulate_lines(SimConfig(seed=7, start=1_764_000_000.0, minutes=20))) + b"\n")
    tokens = {"reg": {"role": "regulator"}, "weibo": {"role": "platform", "platform": "weibo"},
              "douyin": {"role": "platform", "platform": "douyin"}}
    with demo_serving(src, tokens) as base:
        yield base


def test_an_alerts_versions_oldest_first_for_whoever_may_read_it(simulated: str) -> None:
    def get(path: str, token: str) -> httpx.Response:
        return httpx.get(simulated + path, headers={"Authorization": f"Bearer {token}"}, timeout=5)

    campaigns = get("/api/campaigns", "reg").json()
    latest = campaigns[0]
    versions = get(f"/api/alerts/{latest['alert_id']}/versions", "reg").json()
    assert [v["version"] for v in versions] == list(range(1, latest["version"] + 1)) and len(versions) >= 3
    assert versions[-1] == latest
    sizes = [len(v["evidence"]["accounts"]) for v in versions]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the campaign grew
    assert get(f"/api/alerts/{latest['alert_id']}/versions", "weibo").json() == versions
    assert get(f"/api/alerts/{latest['alert_id']}/versions", "douyin").status_code == 403
    assert get("/api/alerts/nope/versions", "reg").status_code == 404
    assert httpx.get(f"{simulated}/api/alerts/{latest['alert_id']}/versions").status_code == 401


def test_the_chart_library_is_served_from_the_package_and_the_csp_stays_strict(simulated: str) -> None:
    from streams.outputs.api import STATIC

    script = httpx.get(f"{simulated}/static/echarts.min.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.content == (STATIC / "echarts.min.js").read_bytes() and len(script.content) > 500_000
    assert "Apache License" in httpx.get(f"{simulated}/static/echarts-LICENSE.txt").text
    for missing in ("nope.js", "..%2Fapi.py", "%2E%2E/dashboard.html", "../api.py"):
        assert httpx.get(f"{simulated}/static/{missing}").status_code == 404, missing
    page = httpx.get(f"{simulated}/dashboard")
    assert b'<script src="/static/echarts.min.js"></script>' in page.content
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'self'" and csp["object-src"] == "'none'"
    assert csp["script-src"].startswith("'self' 'sha256-") and "unsafe" not in page.headers["content-security-policy"]
