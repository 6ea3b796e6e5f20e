"""The API never fails because of one record: hostile ids and times no calendar holds are
left out (and counted) or shown without the time, and the rest of each answer is served."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from detectors.orders import ledger_detectors
from events import decode
from events.records import record_key
from streams import metrics
from streams.outputs.api import Sources, handle
from streams.engine import Engine
from tests.support.events import action, order, tick

TOKENS = {"reg": {"role": "regulator"}, "weibo": {"role": "platform", "platform": "weibo"}}
YEAR_0 = datetime.fromisoformat("0001-01-01T00:00:00+00:01").timestamp()  # 0000-12-31 in UTC
YEAR_10000 = datetime.fromisoformat("9999-12-31T23:59:59-01:00").timestamp()  # 10000-01-01 in UTC


def skipped(endpoint: str) -> float:
    return metrics.REGISTRY.get_sample_value("stormwatch_api_records_skipped_total", {"endpoint": endpoint}) or 0.0


@pytest.fixture
def sources() -> Sources:
    """Two weibo orders (one refused), and a record where an order's would be that is not an
    order (a platform's refusals: state from an older worker, or anything else hostile)."""
    engine = Engine(ledger_detectors())
    alerts: dict[str, dict] = {}
    for raw in [order("w1", 0, 30), action("a1", "w1", 5, "acknowledged"), order("w2", 0, 60),
                action("a2", "w2", 3, "refused"), tick(90)]:
        for alert in engine.process(decode(orjson.dumps(raw), "t")):
            alerts[alert.alert_id] = alert.model_dump()
    ledger = engine.by_name["orders"].state
    ledger[record_key("order", "weibo", "refusals")] = {"refusals": [[YEAR_0, "x1"]], "alerts": {}, "reported": 1}
    return Sources(alerts=alerts, ledger=ledger, now=lambda platform: engine.watermark().of(platform))


def get(sources: Sources, path: str, token: str = "reg", **query) -> tuple[int, object]:
    return handle(path, query, f"Bearer {token}", TOKENS, sources)


def test_an_id_with_a_tab_colliding_with_an_order_key_is_skipped_and_counted(sources: Sources) -> None:
    before = skipped("orders"), skipped("scorecard")
    status, orders = get(sources, "/api/orders")
    assert status == 200 and [o["order_id"] for o in orders] == ["w1", "w2"]
    status, card = get(sources, "/api/platforms/weibo/scorecard", "weibo")
    assert status == 200 and card["orders_received"] == 2 and card["refusals_within_two_years"] == 1
    assert (skipped("orders"), skipped("scorecard")) == (before[0] + 1, before[1] + 1)


def test_an_action_in_year_0_or_10000_shows_the_order_without_that_time(sources: Sources) -> None:
    sources.ledger[record_key("order", "weibo", "w1")]["actions"] += [[YEAR_0, "ancient", "content_removed"]]
    sources.ledger[record_key("order", "weibo", "w1")]["actions"].sort()
    sources.ledger[record_key("order", "weibo", "w2")]["actions"] += [[YEAR_10000, "future", "completed"]]
    status, orders = get(sources, "/api/orders")
    assert status == 200 and [o["order_id"] for o in orders] == ["w1", "w2"]
    w1 = orders[0]
    assert w1["actions"][0] == {"ts": None, "action_id": "ancient", "action": "content_removed"}
    assert w1["actions"][1]["ts"] == "2026-11-30T00:05:00Z" and w1["deadline"] == "2026-11-30T00:30:00Z"
    assert orders[1]["actions"][-1]["ts"] is None


def test_a_scorecard_as_of_year_10000_is_served(sources: Sources) -> None:
    sources.now = lambda _platform: YEAR_10000
    status, card = get(sources, "/api/platforms/weibo/scorecard")
    assert status == 200 and card["as_of"] is None and card["orders_received"] == 2
    assert card["open_past_deadline"] == 2 and card["median_seconds_to_acknowledge"] == 300


def test_orders_that_cannot_be_shown_are_skipped_and_counted(sources: Sources) -> None:
    sources.ledger[record_key("order", "weibo", "broken")] = {"order": {"platform": "weibo"}, "actions": []}  # no deadline, no after
    sources.ledger[record_key("order", "weibo", "stolen")] = {**sources.ledger[record_key("order", "weibo", "w1")],
                                         "order": {**sources.ledger[record_key("order", "weibo", "w1")]["order"], "platform": "douyin"}}
    before = skipped("orders")
    status, orders = get(sources, "/api/orders")
    assert status == 200 and [o["order_id"] for o in orders] == ["w1", "w2"]
    assert skipped("orders") == before + 3  # and the refusals record at an order key


def test_alerts_that_cannot_be_shown_are_skipped_and_counted(sources: Sources) -> None:
    good = get(sources, "/api/alerts")[1]
    assert good
    sources.alerts["bad-ts"] = {**good[0], "alert_id": "bad-ts", "ts": "10000-01-01T00:00:00Z"}
    sources.alerts["no-platform"] = {k: v for k, v in good[0].items() if k != "platform"}
    sources.alerts["camp"] = {**good[0], "alert_id": "camp", "kind": "water_army_campaign", "evidence": {}}
    sources.alerts["casc"] = {**good[0], "alert_id": "casc", "kind": "legal_threshold",
                              "subject": {"type": "post", "id": "p9"}, "evidence": {"threshold": "t", "views": "many"}}
    before = {e: skipped(e) for e in ("alerts", "campaigns", "cascades")}
    status, alerts = get(sources, "/api/alerts")
    assert status == 200 and {a["alert_id"] for a in alerts} == {"casc", "camp"} | {a["alert_id"] for a in good}
    assert len(alerts) == len(good) + 2
    assert get(sources, "/api/campaigns") == (200, [])
    assert get(sources, "/api/cascades") == (200, [])
    assert {e: skipped(e) - before[e] for e in before} == {"alerts": 2, "campaigns": 2, "cascades": 2}  # no-platform too
