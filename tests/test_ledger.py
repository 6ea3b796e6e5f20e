"""The order ledger: deadlines in event time, refusals, disputes, duplicates, early actions."""

from __future__ import annotations

import orjson

from compliance.ledger import OrderLedger, ledger_state
from events import decode
from streams.engine import Engine
from tests.support.events import action, order, tick


def run(events: list[dict]) -> tuple[list[dict], Engine]:
    engine = Engine([OrderLedger()])
    alerts = []
    for raw in events:
        alerts.extend(a.model_dump() for a in engine.process(decode(orjson.dumps(raw), "t")))
    return alerts, engine


def record(engine: Engine, order_id: str, platform: str = "weibo") -> dict:
    return engine.stages[0].state[f"{platform}\to\t{order_id}"]


def kinds(alerts: list[dict]) -> list[str]:
    return [a["kind"] for a in alerts]


def test_completed_on_time_raises_nothing() -> None:
    alerts, engine = run([order("o1", 0, 60), action("a1", "o1", 10, "acknowledged"),
                          action("a2", "o1", 50, "completed"), tick(600)])
    assert alerts == []
    assert ledger_state(record(engine, "o1"), 10**12) == "completed"


def test_silence_past_the_deadline_is_overdue_with_every_measure_missing() -> None:
    alerts, _ = run([order("o1", 0, 60, measures=["remove_content", "report_back"]), tick(61)])
    assert kinds(alerts) == ["order_overdue"]
    evidence = alerts[0]["evidence"]
    assert evidence["missing_measures"] == ["remove_content", "report_back"]
    assert evidence["order_id"] == "o1" and evidence["deadline"] == "2026-11-30T01:00:00Z"
    assert alerts[0]["subject"] == {"type": "order", "id": "o1"} and alerts[0]["platform"] == "weibo"


def test_nothing_fires_before_the_deadline() -> None:
    alerts, engine = run([order("o1", 0, 60), action("a1", "o1", 5, "acknowledged"), tick(59.9)])
    assert alerts == []
    assert ledger_state(record(engine, "o1"), engine.watermark().value) == "acknowledged"


def test_completion_after_the_deadline_does_not_undo_overdue() -> None:
    alerts, _ = run([order("o1", 0, 60), action("a1", "o1", 70, "completed"), tick(80)])
    assert kinds(alerts) == ["order_overdue"]


def test_explicit_refusal_is_raised_at_once_and_once() -> None:
    alerts, _ = run([order("o1", 0, 60), action("a1", "o1", 5, "refused"), action("a2", "o1", 6, "refused")])
    assert kinds(alerts) == ["order_refused"]
    assert alerts[0]["evidence"] == {"order_id": "o1", "action_id": "a1"}
    assert alerts[0]["severity"] == "critical"


def test_dispute_without_compliance_becomes_refusal_at_the_deadline() -> None:
    alerts, _ = run([order("o1", 0, 60), action("a1", "o1", 5, "disputed"), tick(61)])
    assert kinds(alerts) == ["order_overdue", "order_refused"]
    assert alerts[1]["evidence"]["action_id"] == "a1"


def test_dispute_then_compliance_is_fine() -> None:
    alerts, _ = run([order("o1", 0, 60), action("a1", "o1", 5, "disputed"), action("a2", "o1", 30, "completed"),
                     tick(61)])
    assert alerts == []


def test_duplicate_deliveries_are_harmless() -> None:
    events = [order("o1", 0, 60), action("a1", "o1", 5, "content_removed")]
    alerts, engine = run(events + events + [tick(61)])
    assert kinds(alerts) == ["order_overdue"]
    assert len(record(engine, "o1")["actions"]) == 1


def test_action_before_its_order_is_kept() -> None:
    alerts, _ = run([action("a1", "o1", 5, "completed"), order("o1", 0, 60), tick(61)])
    assert alerts == []


def test_partial_measures_name_only_the_missing_ones() -> None:
    alerts, _ = run([order("o1", 0, 60, measures=["remove_content", "suspend_account", "preserve_evidence"]),
                     action("a1", "o1", 10, "content_removed"), action("a2", "o1", 20, "evidence_preserved"),
                     tick(61)])
    overdue = [a for a in alerts if a["kind"] == "order_overdue"]  # (removed before preserving: also evidence_not_preserved)
    assert overdue[0]["evidence"]["missing_measures"] == ["suspend_account"]


def test_alert_ids_are_stable_and_distinct() -> None:
    first, _ = run([order("o1", 0, 60), order("o2", 0, 60), tick(61)])
    again, _ = run([order("o1", 0, 60), order("o2", 0, 60), tick(61)])
    assert [a["alert_id"] for a in first] == [a["alert_id"] for a in again]
    assert len({a["alert_id"] for a in first}) == 2
