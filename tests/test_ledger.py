"""The order ledger: deadlines in event time, refusals, disputes, duplicates, early actions."""

from __future__ import annotations


from detectors.orders import ledger_detectors, ledger_state
from events.records import record_key
from streams.engine import Engine
from tests.support.events import action, feed, order, tick


def run(events: list[dict]) -> tuple[list[dict], Engine]:
    engine = Engine(ledger_detectors())
    return feed(engine, events), engine


def record(engine: Engine, order_id: str, platform: str = "weibo") -> dict:
    return engine.by_name["orders"].state[record_key("order", platform, order_id)]


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


def test_twenty_thousand_actions_on_one_order_keep_a_bounded_list_and_exact_figures() -> None:
    """A platform flooding one order with actions: the ledger keeps the first ACTIONS_KEPT plus the
    first of each kind, so each action costs the same however many came before (was a scan and a
    sort of all of them: 20 s for 20,000)."""
    import time

    from detectors.order_view import describe
    from detectors.orders import ACTIONS_KEPT, measures_done

    n = 20_000
    events = [order("flood", 0, 60, measures=["remove_content", "suspend_account"])]
    events += [action(f"f{i}", "flood", 1 + 50 * i / n, "acknowledged") for i in range(n)]
    events += [action("late-removal", "flood", 52, "content_removed"), action("done", "flood", 55, "completed")]
    started = time.perf_counter()
    alerts, engine = run(events + [tick(61)])
    elapsed = time.perf_counter() - started
    rec = record(engine, "flood")
    assert alerts == []  # completed in time
    assert len(rec["actions"]) <= ACTIONS_KEPT + 2  # bounded: the first ones plus each kind's first
    assert [a for _t, a_id, a in rec["actions"] if a_id in ("late-removal", "done")] == ["content_removed", "completed"]
    assert ledger_state(rec, 10**12) == "completed"
    assert measures_done(rec, 10**12) == {"remove_content", "suspend_account"}
    assert describe("flood", rec, 10**12)["action_counts"] == {"acknowledged": n, "content_removed": 1, "completed": 1}
    assert elapsed < 10, elapsed  # generous; the structural bound above is the real check


def test_a_bounded_action_list_gives_the_same_alerts_and_figures_as_an_unbounded_one(monkeypatch) -> None:
    """Verdicts read only the first action of each kind, which the bounded list always keeps."""
    import detectors.order_view as view
    import detectors.orders as ledger

    def flood(oid: str, deadline: float) -> list[dict]:
        out = [order(oid, 0, deadline, measures=["remove_content", "preserve_evidence"])]
        for i in range(40):  # out of order and with re-deliveries
            minute = (i * 7) % 40 + 1
            kind = ["acknowledged", "disputed", "content_removed", "refused"][i % 4]
            out.append(action(f"{oid}-{i}", oid, minute, kind))
            if i % 5 == 0:
                out.append(action(f"{oid}-{i}", oid, minute, kind))
        return out + [action(f"{oid}-ev", oid, 45, "evidence_preserved")]

    events = flood("b1", 30) + flood("b2", 60) + [tick(120)]
    figures = {}
    for kept in (10**9, 3):
        monkeypatch.setattr(ledger, "ACTIONS_KEPT", kept)
        alerts, engine = run(events)
        state = engine.by_name["orders"].state
        figures[kept] = (alerts, view.scorecard(state, "weibo", engine.watermark().value),
                         [(ledger_state(record(engine, o), t), sorted(ledger.measures_done(record(engine, o), t)))
                          for o in ("b1", "b2") for t in (record(engine, o)["order"]["issued"] + 60 * m for m in range(0, 130, 5))])
        assert kept > 100 or all(len(record(engine, o)["actions"]) <= 3 + 5 for o in ("b1", "b2"))
    assert figures[3] == figures[10**9]
    # content removed before the evidence it was ordered to preserve: evidence_not_preserved too
    assert [a["kind"] for a in figures[3][0]] == ["evidence_not_preserved", "order_refused", "order_overdue",
                                                 "evidence_not_preserved", "order_refused", "order_overdue"]


def test_the_ledger_takes_only_activity_on_ordered_items_and_each_post_once() -> None:
    """OrderWatch (keyed by item) hands the ledger the posts touching an ordered item, once per
    item; the ledger takes each once, and posts elsewhere never reach it."""
    from tests.support.events import post

    order_items = [{"post_id": "p1"}, {"account_id": "a7"}]
    events = [order("o1", 0, 10, items=order_items),
              post("r1", 20, account="a7", kind="repost", parent_id="p1", root_id="p1"),  # two ordered items
              post("q1", 21, account="a2"), post("q2", 22, account="a3", kind="repost", parent_id="q1"), tick(30)]
    alerts, engine = run(events)
    after = record(engine, "o1")["after"]
    assert after["items"] == 2 and after["reposts"] == 1 and after["spread"] == 1  # r1 once, per item it touches
    assert kinds(alerts) == ["order_overdue"] + ["continued_dissemination"] * 2  # 1 item, then 2 (doubled)
    handed = engine.by_name["orders"].contexts[0]["weibo"].part.emitted  # what OrderWatch handed it, once
    assert [sorted(marks) for marks in handed.values()] == [[("weibo", events[1]["event_id"], "post")]]


def test_an_input_post_is_not_taken_by_a_detector_that_only_receives_posts() -> None:
    """The ledger ``receives`` posts: from OrderWatch (in process) or another stage's topic
    (a ``stage:`` source on Kafka), never straight from the input."""
    from detectors.orders import OrderLedger
    from events import decode
    from tests.support.events import post

    import orjson

    engine = Engine([OrderLedger()], sources=["posts/0", "stage:order_watch/0"])
    for source in ("posts/0", "stage:order_watch/0"):
        engine.process(decode(orjson.dumps(order("o1", 0, 10)), "t"), source=source)
    late = post("x1", 20, account="a1", parent_id="p1", kind="repost")
    engine.process(decode(orjson.dumps(late), "t"), source="posts/0")
    engine.process(decode(orjson.dumps(tick(25)), "t"), source="stage:order_watch/0")
    assert record(engine, "o1")["after"]["items"] == 0
    late["event_id"] += "-handed"
    engine.process(decode(orjson.dumps(late), "t"), source="stage:order_watch/0")
    engine.process(decode(orjson.dumps(tick(30)), "t"), source="posts/0")
    engine.process(decode(orjson.dumps(tick(30)), "t"), source="stage:order_watch/0")
    assert record(engine, "o1")["after"]["items"] == 1
