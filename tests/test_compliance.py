"""Orders followed to their end: continued dissemination, duty-refusal candidates, scorecards."""

from __future__ import annotations


from detectors.order_view import describe, orders_of, scorecard
from detectors.orders import ledger_detectors
from events import format_ts
from streams.engine import Engine
from tests.support.events import T0, action, feed, order, post, tick

DAY = 1440  # minutes


def engagement(pid: str, minute: float, views: int, reposts: int = 0, reach: int = 0) -> dict:
    from tests.support.events import at

    return {"type": "engagement", "event_id": f"g-{pid}-{minute}-{views}", "platform": "weibo", "ts": at(minute),
            "post_id": pid, "views": views, "reposts": reposts, "reach_accounts": reach}


def run(events: list[dict]) -> tuple[list[dict], Engine]:
    engine = Engine(ledger_detectors())
    alerts = feed(engine, events)
    assert not engine.failures
    return alerts, engine


def kinds(alerts: list[dict]) -> list[str]:
    return [a["kind"] for a in alerts]


def test_on_time_compliance_with_quiet_items_raises_nothing() -> None:
    alerts, engine = run([post("p1", -5), engagement("p1", -1, 900), order("o1", 0, 60),
                          action("a1", "o1", 5, "acknowledged"), action("a2", "o1", 20, "content_removed"),
                          action("a3", "o1", 30, "completed"), engagement("p1", 90, 900), tick(3 * DAY)])
    assert alerts == []
    card = scorecard(engine.by_name["orders"].state, "weibo", engine.watermark().value)
    assert (card["orders_received"], card["completed_on_time"], card["open_past_deadline"]) == (1, 1, 0)
    assert card["median_seconds_to_acknowledge"] == 300 and card["median_seconds_to_comply"] == 1800


def test_silence_past_the_deadline_is_overdue_but_no_duty_case_without_grounds() -> None:
    alerts, engine = run([order("o1", 0, 60), engagement("p1", 30, 5), engagement("p1", 70, 10), tick(120)])
    assert kinds(alerts) == ["order_overdue", "continued_dissemination"]  # the deadline first, then the spread
    card = scorecard(engine.by_name["orders"].state, "weibo", engine.watermark().value)
    assert card["open_past_deadline"] == 1 and card["completed_on_time"] == 0


def test_explicit_refusal_without_spread_is_refused_not_a_duty_case() -> None:
    alerts, _ = run([order("o1", 0, 60), action("a1", "o1", 10, "refused"), tick(120)])
    assert kinds(alerts) == ["order_refused", "order_overdue"]


def test_a_fake_removal_with_continued_views_is_continued_dissemination() -> None:
    alerts, _ = run([engagement("p1", -10, 1_000), order("o1", 0, 60), action("a1", "o1", 20, "content_removed"),
                     action("a2", "o1", 30, "completed"), engagement("p1", 50, 1_200),
                     engagement("p1", 80, 1_500), engagement("p1", 100, 4_000), tick(200)])
    assert kinds(alerts) == ["continued_dissemination", "continued_dissemination"]
    first, second = alerts
    assert first["ts"] == format_ts(T0.timestamp() + 80 * 60)
    assert first["evidence"]["views_after_deadline"] == 300  # 1,500 now - 1,200 at the deadline
    assert first["evidence"]["platform_claimed"] == ["completed", "content_removed"]
    assert first["severity"] == "critical" and first["evidence"]["items"] == ["post:p1"]
    assert second["version"] == 2 and second["evidence"]["views_after_deadline"] == 2_800


def test_refusal_with_50000_views_after_the_deadline_is_a_duty_refusal_candidate() -> None:
    events = [order("o1", 0, 60, legal_basis="网络安全法 第49条"), engagement("p1", 30, 20_000),
              action("a1", "o1", 10, "refused"), engagement("p1", 70, 40_000), engagement("p1", 90, 69_999),
              engagement("p1", 95, 70_000), engagement("p1", 99, 80_000), tick(200)]
    alerts, _ = run(events)
    duty = [a for a in alerts if a["kind"] == "duty_refusal"]
    assert len(duty) == 1
    assert duty[0]["ts"] == format_ts(T0.timestamp() + 95 * 60)  # the event that made 50,000 after the deadline
    assert duty[0]["evidence"]["grounds"] == ["dissemination_clicks_50000"]
    assert duty[0]["evidence"]["views_after_deadline"] == 50_000
    assert duty[0]["evidence"]["refusal_action_id"] == "a1"
    assert {"order_refused", "order_overdue", "continued_dissemination"} <= set(kinds(alerts))


def test_an_invalid_order_is_never_a_duty_case() -> None:
    events = [order("o1", 0, 60, legal_basis=""), action("a1", "o1", 10, "refused"),
              engagement("p1", 90, 90_000), tick(200)]
    assert "duty_refusal" not in kinds(run(events)[0])
    other = [order("o2", 0, 60, regulator="a_newspaper"), action("a2", "o2", 10, "refused"),
             engagement("p1", 90, 90_000), tick(200)]
    assert "duty_refusal" not in kinds(run(other)[0])


def test_an_ordered_account_that_keeps_posting_spreads_items() -> None:
    events = [order("o1", 0, 60, measures=["suspend_account"], items=[{"account_id": "troll"}]),
              action("a1", "o1", 30, "account_suspended"), action("a2", "o1", 31, "completed")]
    events += [post(f"t{n}", 61 + n, account="troll") for n in range(3)]
    alerts, _ = run(events + [tick(200)])
    assert kinds(alerts) == ["continued_dissemination", "continued_dissemination"]  # 1 post, then 2
    assert alerts[-1]["evidence"]["posts_after_deadline"] == 2


def hashtag_flood(n: int, labels: list[str]) -> list[dict]:
    events = [order("o1", 0, 60, measures=["stop_amplification"], items=[{"hashtag": "扒林某"}])]
    events += [post(f"h{k}", 61 + k / 100, account=f"u{k}", hashtags=["扒林某"], labels=labels) for k in range(n)]
    return events + [tick(200)]


def duty_grounds(alerts: list[dict]) -> list[list[str]]:
    return [a["evidence"]["grounds"] for a in alerts if a["kind"] == "duty_refusal"]


def test_harmful_posts_under_an_ordered_hashtag_meet_the_items_ground_at_2000() -> None:
    """2019-15 Art. 3(2): 2,000 items disseminated; posting accounts are not the accounts reached."""
    assert duty_grounds(run(hashtag_flood(1_999, ["insult"]))[0]) == []
    assert duty_grounds(run(hashtag_flood(2_000, ["insult"]))[0]) == [["dissemination_items_2000"]]
    assert duty_grounds(run(hashtag_flood(2_001, ["insult"]))[0]) == [["dissemination_items_2000"]]


def test_posts_that_do_not_disseminate_the_ordered_content_meet_no_ground() -> None:
    """Unlabelled posts under an ordered hashtag, and 2,000 comments rebutting an ordered post,
    are activity on the item (continued_dissemination says it is still up), not dissemination."""
    alerts, _ = run(hashtag_flood(2_500, []))
    assert duty_grounds(alerts) == []
    events = [order("o2", 0, 60, items=[{"post_id": "rumor"}])]
    events += [post(f"c{k}", 61 + k / 100, account=f"u{k}", kind="comment", parent_id="rumor", root_id="rumor",
                    text="这是谣言，别信") for k in range(2_500)]
    alerts, _ = run(events + [tick(200)])
    assert duty_grounds(alerts) == []
    last = [a for a in alerts if a["kind"] == "continued_dissemination"][-1]["evidence"]
    assert last["posts_after_deadline"] >= 2_000 and last["disseminations_after_deadline"] == 0  # re-reported as it doubles


def test_reposts_of_an_ordered_post_disseminate_it() -> None:
    events = [order("o3", 0, 60, items=[{"post_id": "rumor"}])]
    events += [post(f"r{k}", 61 + k / 100, account=f"u{k}", kind="repost", parent_id="rumor", root_id="rumor")
               for k in range(2_000)]
    assert duty_grounds(run(events + [tick(200)])[0]) == [["dissemination_items_2000"]]


def test_the_accounts_ground_counts_accounts_reached_not_accounts_that_posted() -> None:
    base = [order("o4", 0, 60, items=[{"post_id": "p1"}]), engagement("p1", 50, 10, reach=100)]
    for reach, grounds in ((1_999 + 100, []), (2_000 + 100, [["dissemination_accounts_2000"]]),
                           (2_001 + 100, [["dissemination_accounts_2000"]])):
        alerts, _ = run(base + [engagement("p1", 90, 20, reach=reach), tick(200)])
        assert duty_grounds(alerts) == grounds, reach


def test_repeated_refusals_within_two_years_make_a_platform_case() -> None:
    events = []
    for n, day in enumerate([0, 200, 500]):
        events += [order(f"o{n}", day * DAY, day * DAY + 60), action(f"a{n}", f"o{n}", day * DAY + 5, "refused")]
    alerts, engine = run(events + [tick(600 * DAY)])
    platform_cases = [a for a in alerts if a["kind"] == "duty_refusal"]
    assert len(platform_cases) == 1 and platform_cases[0]["subject"] == {"type": "platform", "id": "weibo"}
    assert platform_cases[0]["evidence"]["refusals"] == 3 and platform_cases[0]["ts"] == format_ts(
        T0.timestamp() + (500 * DAY + 5) * 60)
    assert scorecard(engine.by_name["orders"].state, "weibo", engine.watermark().value)["refusals_within_two_years"] == 3


def test_refusals_more_than_two_years_apart_do_not_add_up() -> None:
    events = []
    for n, day in enumerate([0, 400, 800]):
        events += [order(f"o{n}", day * DAY, day * DAY + 60), action(f"a{n}", f"o{n}", day * DAY + 5, "refused")]
    alerts, _ = run(events + [tick(900 * DAY)])
    assert not [a for a in alerts if a["subject"]["type"] == "platform"]


def test_the_api_view_of_an_order() -> None:
    _, engine = run([order("o1", 0, 60, measures=["remove_content", "report_back"]),
                     action("a1", "o1", 5, "acknowledged"), action("a2", "o1", 9, "content_removed"), tick(30)])
    [(platform, order_id, record)] = orders_of(engine.by_name["orders"].state)
    view = describe(order_id, record, engine.watermark().value)
    assert (platform, view["state"], view["measures_done"], view["measures_missing"]) == (
        "weibo", "in_progress", ["remove_content"], ["report_back"])
    assert [a["action"] for a in view["actions"]] == ["acknowledged", "content_removed"]


def test_every_legal_figure_says_where_it_is_measured_or_that_it_is_not() -> None:
    """Issue 16, item 8: figures in the law table that nothing read looked enforced. Each now
    names the functions that compare against it, and those functions read it; a figure marked
    "not measured" is read by no detector."""
    import importlib
    import inspect
    from pathlib import Path

    from compliance.law import MEASURED_AT, NOT_MEASURED, TABLE, measured

    assert set(MEASURED_AT) == {f.id for f in TABLE}
    root = Path(__file__).resolve().parents[1]
    code = "".join(p.read_text(encoding="utf-8") for d in ("detectors", "compliance", "streams", "streams/kafka", "streams/outputs", "commands")
                   for p in sorted((root / d).glob("*.py")) if p.name != "law.py")
    for figure in TABLE:
        where = MEASURED_AT[figure.id]
        if not measured(figure.id):
            assert where.startswith(f"{NOT_MEASURED}: ") and len(where) > len(NOT_MEASURED) + 10, figure.id
            assert f'"{figure.id}"' not in code, f"{figure.id} is read somewhere but marked not measured"
            continue
        module_name, functions = where.split(" ")[0].split(":")[0], where.split(":", 1)[1].split(" (")[0]
        module = importlib.import_module(module_name)
        owner = None
        for name in functions.split(", "):
            cls, _, fn = name.rpartition(".")
            owner = getattr(module, cls) if cls else owner
            source = inspect.getsource(getattr(owner, fn))
            assert f'"{figure.id}"' in source, f"{name} does not read {figure.id}"
    assert sum(not measured(f.id) for f in TABLE) == 8  # videos, groups, three leaks, three doxxing counts


def test_citations_name_the_items_of_their_articles() -> None:
    """Issue 16, item 7: 2019-15 Art. 4 and 2017-10 Art. 5 are cited by item, and the 500-item
    doxxing category includes communication records (通信记录)."""
    from compliance.law import BY_ID

    assert [BY_ID[f].source.split(";")[0] for f in ("leak_sensitive_500", "leak_safety_5000", "leak_other_50000")] \
        == ["Interpretation 2019-15 Art. 4(1)", "Interpretation 2019-15 Art. 4(2)", "Interpretation 2019-15 Art. 4(3)"]
    assert [BY_ID[f].source.split(";")[0] for f in ("doxxing_sensitive_50", "doxxing_safety_500", "doxxing_other_5000")] \
        == ["Interpretation 2017-10 Art. 5(3)", "Interpretation 2017-10 Art. 5(4)", "Interpretation 2017-10 Art. 5(5)"]
    assert "通信记录" in BY_ID["doxxing_safety_500"].counts and "通信记录" in BY_ID["leak_safety_5000"].counts
    assert [BY_ID[f].source.rsplit(" ", 2)[-2:] for f in ("marketing_posts_100", "marketing_accounts_2000",
                                                          "marketing_followers_30000")] == [
        ["item", "1"], ["item", "2"], ["item", "4"]]
