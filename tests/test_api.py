"""The API checks who is asking: a platform sees only its own data, by any endpoint or filter."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.demo import demo_serving

TOKENS = {"reg-token": {"role": "regulator"}, "weibo-token": {"role": "platform", "platform": "weibo"},
          "douyin-token": {"role": "platform", "platform": "douyin"}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo on a file with two platforms' orders and alerts; serves until the module ends."""
    from tests.support.events import action, lines, order, tick

    src = tmp_path_factory.mktemp("api") / "two-platforms.jsonl"
    src.write_bytes(lines([order("w1", 0, 30), action("wa", "w1", 5, "acknowledged"),
                           order("d1", 0, 30, platform="douyin"), action("da", "d1", 3, "refused", platform="douyin"),
                           order("w2", 1, 90), action("wb", "w2", 10, "completed"), tick(120)]))
    with demo_serving(src, TOKENS) as base:
        yield base


def get(base: str, path: str, token: str | None = None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(base + path, headers=headers, params=params, timeout=5)


ENDPOINTS = ["/api/alerts", "/api/orders", "/api/campaigns", "/api/cascades", "/api/platforms/weibo/scorecard"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_token_or_an_unknown_token_is_401(demo: str, path: str) -> None:
    assert get(demo, path).status_code == 401
    assert get(demo, path, "not-a-token").status_code == 401
    assert httpx.get(demo + path, headers={"Authorization": "reg-token"}).status_code == 401  # no "Bearer"


def test_a_regulator_sees_every_platform(demo: str) -> None:
    orders = get(demo, "/api/orders", "reg-token").json()
    assert {o["order_id"]: o["state"] for o in orders} == {"d1": "overdue", "w1": "overdue", "w2": "completed"}
    alerts = get(demo, "/api/alerts", "reg-token").json()
    assert {a["platform"] for a in alerts} == {"weibo", "douyin"}
    assert [a["ts"] for a in alerts] == sorted((a["ts"] for a in alerts), reverse=True)  # newest first
    assert {a["kind"] for a in get(demo, "/api/alerts", "reg-token", kind="order_refused").json()} == {"order_refused"}


def test_a_platform_sees_only_its_own_data_by_any_endpoint_or_filter(demo: str) -> None:
    orders = get(demo, "/api/orders", "weibo-token").json()
    assert {o["platform"] for o in orders} == {"weibo"} and len(orders) == 2
    alerts = get(demo, "/api/alerts", "weibo-token").json()
    assert alerts and {a["platform"] for a in alerts} == {"weibo"}
    for path in ENDPOINTS[:4]:
        denied = get(demo, path, "weibo-token", platform="douyin")
        assert denied.status_code == 403 and "douyin" not in json.dumps(denied.json()).replace("'douyin'", "")
    assert get(demo, "/api/platforms/douyin/scorecard", "weibo-token").status_code == 403
    assert get(demo, "/api/alerts", "weibo-token", subject="d1").json() == []  # a filter never leaks


def test_scorecards_are_served_live(demo: str) -> None:
    weibo = get(demo, "/api/platforms/weibo/scorecard", "weibo-token").json()
    assert (weibo["orders_received"], weibo["completed_on_time"], weibo["open_past_deadline"]) == (2, 1, 1)
    assert weibo["median_seconds_to_acknowledge"] == 300 and weibo["median_seconds_to_comply"] == 540
    douyin = get(demo, "/api/platforms/douyin/scorecard", "reg-token").json()
    assert douyin["refusals_within_two_years"] == 1 and douyin["orders_received"] == 1


def test_the_openapi_description_lists_every_endpoint(demo: str) -> None:
    spec = httpx.get(demo + "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and set(spec["paths"]) == {
        "/api/alerts", "/api/campaigns", "/api/cascades", "/api/orders", "/api/platforms/{platform}/scorecard",
        "/api/alerts/{alert_id}/evidence", "/api/alerts/{alert_id}/versions"}
    for path in ENDPOINTS:  # and each of them answers a regulator
        assert get(demo, path, "reg-token").status_code == 200


def test_an_alerts_evidence_bundle_goes_to_the_regulator_and_its_own_platform_only(demo: str) -> None:
    from evidence.bundle import verify

    alerts = get(demo, "/api/alerts", "reg-token").json()
    douyin = next(a["alert_id"] for a in alerts if a["platform"] == "douyin")
    response = get(demo, f"/api/alerts/{douyin}/evidence", "reg-token")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert verify(response.content)[0] == []
    assert get(demo, f"/api/alerts/{douyin}/evidence", "douyin-token").content == response.content
    assert get(demo, f"/api/alerts/{douyin}/evidence", "weibo-token").status_code == 403
    assert httpx.get(f"{demo}/api/alerts/{douyin}/evidence").status_code == 401
