"""The regulator's dashboard in real headless Chromium: it loads, shows the demo's data, and
draws its charts with that data (checked in the page over the DevTools protocol)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
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
    """With STORMWATCH_DOCS_SCREENSHOT=PATH the screenshot is also written there (docs/dashboard.png was made
    so, from a full-hour demo: see screenshot())."""
    shot = asyncio.run(screenshot(f"{demo}/dashboard#token=reg-token", tmp_path))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000
    if os.environ.get("STORMWATCH_DOCS_SCREENSHOT"):
        Path(os.environ["STORMWATCH_DOCS_SCREENSHOT"]).write_bytes(shot)


def test_campaigns_and_cascades_endpoints(demo: str) -> None:
    auth = {"Authorization": "Bearer reg-token"}
    campaigns = httpx.get(f"{demo}/api/campaigns", headers=auth).json()
    assert campaigns and all(acc.startswith("army") for acc in campaigns[0]["evidence"]["accounts"])
    cascades = httpx.get(f"{demo}/api/cascades", headers=auth).json()
    rumor = next(c for c in cascades if c["post_id"] == "rumor-1")
    assert sorted(rumor["figures_crossed"]) == ["defamation_reposts_500", "defamation_views_5000"]


# -- the charts, checked inside the page ------------------------------------------------------------------------

class Page:
    """One tab of headless Chromium driven over the DevTools protocol (aiohttp's websocket client)."""

    def __init__(self, tmp_path: Path, width: int = 1400, height: int = 1000) -> None:
        self.tmp_path, self.size = tmp_path, (width, height)

    async def __aenter__(self) -> "Page":
        browser = shutil.which("chromium")
        assert browser, "chromium is missing: scripts/ensure-tools installs Debian's chromium"
        self.proc = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={self.tmp_path / 'cdp-profile'}",
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = await asyncio.wait_for(asyncio.to_thread(self._devtools_port), 60)
        self.session = aiohttp.ClientSession()
        targets = await (await self.session.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self.ids = 0
        await self.call("Page.enable")
        # Any Content-Security-Policy violation the page meets is recorded (injected scripts are not subject to it).
        await self.call("Page.addScriptToEvaluateOnNewDocument", source="""
            window.__csp = [];
            document.addEventListener("securitypolicyviolation",
                                      e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));""")
        await self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        return self

    def _devtools_port(self) -> int:
        for raw in self.proc.stderr:
            found = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", raw)
            if found:
                return int(found[1])
        raise AssertionError("chromium did not start its DevTools server")

    async def __aexit__(self, *_exc) -> None:
        await self.ws.close()
        await self.session.close()
        self.proc.terminate()
        self.proc.wait(30)

    async def call(self, method: str, **params):
        self.ids += 1
        await self.ws.send_json({"id": self.ids, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), 60)
            if message.get("id") == self.ids:
                assert "error" not in message, message["error"]
                return message["result"]

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["result"].get("description")
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"never true: {expression}")

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.until('document.body && document.body.dataset.loaded === "true"')

    async def screenshot(self) -> bytes:
        return base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])


# What each chart was given and what it drew: the data points per series, the lines marked on it, the size
# of its SVG and how many shapes are in it.
CHARTS = """(() => Object.fromEntries([...document.querySelectorAll(".chart")].map(el => {
  const chart = echarts.getInstanceByDom(el), option = chart ? chart.getOption() : { series: [], title: [] };
  const svg = el.querySelector("svg"), box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
  return [el.id, { points: Number(el.dataset.points), width: box.width, height: box.height,
                   shapes: svg ? svg.querySelectorAll("path, rect, circle").length : 0,
                   subtext: ((option.title || [])[0] || {}).subtext || "",
                   series: option.series.map(s => ({ type: s.type, name: s.name, n: (s.data || []).length, data: s.data,
                     marks: ((s.markLine || {}).data || []).map(d => d.yAxis ?? d.xAxis) })) }];
})))()"""


def api(demo: str, path: str):
    return httpx.get(demo + path, headers={"Authorization": "Bearer reg-token"}, timeout=10).json()


def test_the_charts_render_with_the_demos_data(demo: str, tmp_path: Path) -> None:
    async def run():
        async with Page(tmp_path) as page:
            await page.open(f"{demo}/dashboard#token=reg-token")
            await page.until("document.getElementById('chart-item').dataset.points > 0")
            first = await page.js(CHARTS)
            pick = await page.js("document.getElementById('pick').value")
            address = await page.js("[location.href, sessionStorage.getItem('token')]")
            # Choose the campaign, as a user would in the list.
            await page.js("""(() => { const pick = document.getElementById("pick");
                pick.value = [...pick.options].find(o => o.value.startsWith("campaign:")).value;
                pick.dispatchEvent(new Event("change")); })()""")
            await page.until("echarts.getInstanceByDom(document.getElementById('chart-graph'))"
                             ".getOption().series[0].type === 'graph'")
            second = await page.js(CHARTS)
            return first, pick, address, second, await page.js("window.__csp")

    first, pick, address, second, violations = asyncio.run(run())
    assert violations == []
    assert "#" not in address[0] and "reg-token" not in address[0] and address[1] == "reg-token"
    for name, chart in first.items():  # every chart drew something of a real size
        assert chart["width"] > 300 and chart["height"] > 200 and chart["shapes"] > 5, (name, chart)

    # The cascade: views and reposts at each version of its alerts, the legal figures, the SEISMIC forecast.
    cascade = next(c for c in api(demo, "/api/cascades") if c["post_id"] == "rumor-1")
    assert pick == "post:weibo:rumor-1"
    versions = [v for aid in cascade["alerts"] for v in api(demo, f"/api/alerts/{aid}/versions")]
    views, reposts = first["chart-item"]["series"]
    assert views["name"] == "views" and views["n"] == reposts["n"] == len(versions) >= 3
    assert sorted(p[1] for p in reposts["data"]) == sorted(v["evidence"]["reposts"] for v in versions)
    assert max(p[1] for p in views["data"]) >= 5000 and 5000 in views["marks"]
    assert "SEISMIC" in first["chart-item"]["subtext"]
    assert first["chart-graph"]["series"][0]["n"] == 2

    # Orders on a timeline: one bar per order, the platform's actions as dots.
    orders = api(demo, "/api/orders")
    bars, _late, actions = first["chart-orders"]["series"]
    assert bars["n"] == len(orders) and actions["n"] == sum(len(o["actions"]) for o in orders) > 0

    # Alerts by kind over time: every alert counted once.
    alerts = api(demo, "/api/alerts")
    hourly = first["chart-hourly"]["series"]
    assert {s["name"] for s in hourly} == {a["kind"] for a in alerts}
    assert sum(sum(s["data"]) for s in hourly) == len(alerts)

    # The campaign: its growth over its versions, and its member graph.
    campaign = api(demo, "/api/campaigns")[0]
    growth = api(demo, f"/api/alerts/{campaign['alert_id']}/versions")
    accounts, _pairs = second["chart-item"]["series"]
    assert [p[1] for p in accounts["data"]] == [len(v["evidence"]["accounts"]) for v in growth] and len(growth) >= 2
    graph = second["chart-graph"]["series"][0]
    assert graph["n"] == 1 + len(campaign["evidence"]["accounts"]) + len(campaign["evidence"]["objects"])
    assert second["chart-graph"]["shapes"] > len(campaign["evidence"]["accounts"])


def test_the_link_the_demo_prints_opens_the_dashboard(stormwatch_bin: str, tmp_path: Path) -> None:
    from tests.test_demo_dashboard import start, stop

    src = tmp_path / "orders.jsonl"
    from tests.support.events import lines, order, tick
    src.write_bytes(lines([order("o1", 0, 5), tick(10)]))
    proc, port, url, _line = start(stormwatch_bin, {}, "--replay", str(src))
    token = url.split("#token=")[1]

    async def run():
        async with Page(tmp_path) as page:
            await page.open(url)
            return await page.js("[location.href, sessionStorage.getItem('token'), document.body.innerText]")

    try:
        wait_health(port, proc, alerts=1)
        href, kept, shown = asyncio.run(run())
    finally:
        stop(proc)
    assert href == f"http://127.0.0.1:{port}/dashboard" and kept == token  # the token left the address bar
    assert "o1" in shown and "overdue" in shown and "HTTP 401" not in shown


async def screenshot(url: str, tmp_path: Path, height: int = 1000) -> bytes:
    """The dashboard once its charts are drawn. docs/dashboard.png: ``stormwatch demo --speed 0`` (a full hour),
    then ``asyncio.run(screenshot(<the URL it printed>, Path("/tmp")))``."""
    async with Page(tmp_path, 1400, height) as page:
        await page.open(url)
        await page.until("[...document.querySelectorAll('.chart')].every(el => el.dataset.points > 0)")
        return await page.screenshot()
