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
