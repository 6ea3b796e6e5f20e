"""The optional ``case`` input: decoding, routing, and the rules that read it (未经处理 in
2013-21 Art. 4 and 2019-15 Art. 16; a defamation penalty within two years, 2013-21 Art. 2(3))."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from detectors.orders import OrderLedger, ledger_detectors
from detectors.cascades import Cascades, cascade_detectors
from events import INPUT_TOPICS, Case, DeadLetter, decode, format_ts, keys as ids
from streams.engine import Engine
from commands.produce import route
from streams.registry import build_detectors, routes, stages
from streams.settings import Settings
from tests.support.events import T0, action, order

DAY = 86_400.0
START = T0.timestamp()
_n = iter(range(1, 10**9))


def when(raw: dict) -> datetime:
    return datetime.fromisoformat(raw["ts"])


def event(second: float, **fields) -> dict:
    return {"event_id": f"x{next(_n)}", "platform": "weibo", "ts": format_ts(START + second), **fields}


def case(second: float, subject: str, action_: str = "penalty", conduct: str = "defamation", kind: str = "account",
         decided: float | None = None, case_id: str | None = None, platform: str = "weibo") -> dict:
    raw = event(second, type="case", case_id=case_id or f"k{next(_n)}", subject={"type": kind, "id": subject},
                action=action_, conduct=conduct, platform=platform)
    if decided is not None:
        raw["decided_at"] = format_ts(START + decided)
    return raw


def defamatory(second: float, pid: str, author: str = "writer", platform: str = "weibo") -> dict:
    return event(second, type="post", post_id=pid, account_id=author, kind="original", labels=["defamation"],
                 platform=platform)


def views(second: float, pid: str, n: int) -> dict:
    return event(second, type="engagement", post_id=pid, views=n)


def run(detector, events: list[dict]) -> list[dict]:
    engine = Engine(detector if isinstance(detector, list) else [detector])
    out = []
    for raw in events:
        decoded = decode(orjson.dumps(raw), "t")
        assert not isinstance(decoded, DeadLetter), decoded
        out.extend(a.model_dump() for a in engine.process(decoded))
    assert not engine.failures
    return out


def legal(alerts: list[dict], threshold: str) -> list[dict]:
    return [a for a in alerts if a["kind"] == "legal_threshold" and a["evidence"]["threshold"] == threshold]


# -- decoding and routing -----------------------------------------------------------------------


def test_a_case_decodes_with_decided_at_defaulting_to_ts() -> None:
    got = decode(orjson.dumps(case(0, "writer")), "t")
    assert isinstance(got, Case) and got.decided_epoch == START and got.subject.type == "account"
    dated = decode(orjson.dumps(case(100, "writer", decided=40)), "t")
    assert dated.decided_epoch == START + 40


@pytest.mark.parametrize("change,error", [
    ({"decided_at": format_ts(START + 1)}, "case.decided_at: Value error, a case is sent once decided"),
    ({"subject": {"type": "platform", "id": "douyin"}}, "case.subject: Value error, a platform case names"),
    ({"subject": {"type": "target", "id": "t1"}}, "case.subject.type:"),
    ({"action": "fine"}, "case.action:"),
    ({"conduct": "rudeness"}, "case.conduct:"),
    ({"case_id": ""}, "case.case_id:"),
    ({"authority": "x" * 257}, "case.authority:"),
    ({"decided_at": "2026-11-30T08:00:00"}, "case.decided_at: Input should have timezone info"),
    ({"decided_at": "2100-01-01T00:00:00Z"}, "case.decided_at: Input should be less than"),
])
def test_a_bad_case_is_dead_lettered_naming_the_field(change: dict, error: str) -> None:
    raw = {**case(0, "writer"), **change}
    got = decode(orjson.dumps(raw), "t")
    assert isinstance(got, DeadLetter) and got.error.startswith(error), got
    assert got.reason == "invalid_field"


def test_a_platform_case_about_its_own_platform_and_a_long_basis_are_accepted() -> None:
    raw = {**case(0, "weibo", kind="platform", conduct="duty_refusal"), "legal_basis": "条" * 20_000}
    got = decode(orjson.dumps(raw), "t")
    assert isinstance(got, Case) and len(got.legal_basis) == 10_000


def test_cases_travel_on_the_orders_topic_to_the_ledger_and_the_cascades() -> None:
    assert route(orjson.dumps(case(0, "writer", case_id="k9"))) == ("orders", b"k9")
    assert len(INPUT_TOPICS) == len(set(INPUT_TOPICS)) and "orders" in INPUT_TOPICS
    settings = Settings()
    takers, _fed = routes(settings, stages(build_detectors(settings)))
    assert sorted(d.name for ds in takers["case"].values() for d in ds) == ["cascades", "orders"]
    account, platform = (decode(orjson.dumps(c), "t") for c in (case(0, "writer"), case(0, "weibo", kind="platform")))
    assert Cascades().keys(account) == [ids.key("weibo", "writer")] and Cascades().keys(platform) == []
    assert OrderLedger().keys(platform) == ["weibo"] and OrderLedger().keys(account) == []


# -- 2013-21 Art. 4: conduct not yet dealt with ------------------------------------------------------


def three_items(case_events: list[dict] = ()) -> list[dict]:
    """Three defamatory items of one author, 2,000 views each: 6,000 together at 3 * DAY + 60."""
    events = []
    for n in range(3):
        events += [defamatory(n * DAY, f"p{n}"), views(n * DAY + 60, f"p{n}", 2_000)]
    return sorted(events + list(case_events), key=when)


def test_without_cases_three_items_aggregate() -> None:
    alerts = legal(run(cascade_detectors(), three_items()), "defamation_cumulative_1y")
    assert [a["evidence"]["posts"] for a in alerts] == [["p0", "p1", "p2"]]
    assert "excluded_as_dealt_with" not in alerts[0]["evidence"]


@pytest.mark.parametrize("decided,counted", [
    (-1, ["p0", "p1", "p2"]),  # decided just before the first item: nothing of it was dealt with
    (0, None),  # at the first item's time: it is dealt with, two items left are not 多次
    (1, None),
])
def test_a_case_deals_with_the_conduct_up_to_its_decision(decided: float, counted: list | None) -> None:
    events = three_items([case(max(decided, 0) + 10, "writer", "case_opened", "other", decided=decided)])
    alerts = legal(run(cascade_detectors(), events), "defamation_cumulative_1y")
    assert [a["evidence"]["posts"] for a in alerts] == ([counted] if counted else [])


def test_conduct_after_a_case_is_counted_again_without_what_it_dealt_with() -> None:
    events = three_items([case(DAY / 2, "writer", "warning", "insult")])  # handles p0
    events += [defamatory(4 * DAY, "p3"), views(4 * DAY + 60, "p3", 1_000)]
    alerts = legal(run(cascade_detectors(), events), "defamation_cumulative_1y")
    assert len(alerts) == 1
    evidence = alerts[0]["evidence"]
    assert (evidence["posts"], evidence["excluded_as_dealt_with"], evidence["value"]) == (
        ["p1", "p2", "p3"], ["p0"], 5_000)
    assert alerts[0]["ts"] == format_ts(START + 4 * DAY + 60)


def test_a_case_after_an_alert_lets_new_conduct_be_found_as_a_new_version() -> None:
    events = three_items([case(3 * DAY, "writer", "penalty", "other")])
    for n in range(3, 6):
        events += [defamatory(n * DAY + 100, f"p{n}"), views(n * DAY + 160, f"p{n}", 2_000)]
    alerts = legal(run(cascade_detectors(), events), "defamation_cumulative_1y")
    assert [(a["version"], a["evidence"]["posts"]) for a in alerts] == [
        (1, ["p0", "p1", "p2"]), (2, ["p3", "p4", "p5"])]


def test_another_platforms_case_changes_nothing() -> None:
    events = three_items([case(DAY / 2, "writer", platform="douyin")])
    engine = Engine(cascade_detectors())
    alerts = []
    for raw in events:
        alerts += [a.model_dump() for a in engine.process(decode(orjson.dumps(raw), "t"))]
    assert [a["evidence"]["posts"] for a in legal(alerts, "defamation_cumulative_1y")] == [["p0", "p1", "p2"]]


# -- 2013-21 Art. 2(3): defaming again within two years of a penalty --------------------------------


@pytest.mark.parametrize("after,fires", [
    (0, False),  # the penalised conduct itself, not a repeat
    (1, True),
    (730 * DAY - 1, True),
    (730 * DAY, True),  # at two years
    (730 * DAY + 1, False),  # just past them
])
def test_defaming_within_two_years_of_a_penalty_is_serious(after: float, fires: bool) -> None:
    events = [case(0, "writer", "penalty", "defamation"), defamatory(after, "p9")]
    alerts = legal(run(cascade_detectors(), events), "defamation_after_penalty_2y")
    assert len(alerts) == (1 if fires else 0)
    if fires:
        e = alerts[0]["evidence"]
        assert alerts[0]["subject"] == {"type": "post", "id": "p9"}
        assert (e["account_id"], e["limit"], e["value"]) == ("writer", 730, round(after / DAY, 3))
        assert e["penalty_decided_at"] == format_ts(START) and "candidate" in alerts[0]["summary"]
        assert alerts[0]["legal_refs"] == ["Criminal Law Art. 246", "Interpretation 2013-21 Art. 2(3)"]


@pytest.mark.parametrize("action_,conduct,fires", [
    ("penalty", "defamation", True), ("warning", "defamation", True),
    ("case_opened", "defamation", False),  # a case opened is no penalty yet
    ("penalty", "insult", False),  # a penalty for something else
])
def test_only_an_administrative_penalty_for_defamation_counts(action_: str, conduct: str, fires: bool) -> None:
    events = [case(0, "writer", action_, conduct), defamatory(DAY, "p9")]
    assert len(legal(run(cascade_detectors(), events), "defamation_after_penalty_2y")) == (1 if fires else 0)


def test_a_penalty_reported_after_the_new_post_still_counts_once() -> None:
    first = case(2 * DAY, "writer", "penalty", "defamation", decided=0, case_id="k1")
    again = {**first, "event_id": "another-delivery", "ts": format_ts(START + 3 * DAY)}
    events = [defamatory(DAY, "p9"), first, again, views(3 * DAY + 60, "p9", 10)]
    alerts = legal(run(cascade_detectors(), events), "defamation_after_penalty_2y")
    assert len(alerts) == 1 and alerts[0]["ts"] == format_ts(START + 2 * DAY)


def test_the_figure_is_configurable() -> None:
    from compliance.law import LawSettings

    events = [case(0, "writer"), defamatory(400 * DAY, "p9")]
    law = LawSettings(figures={"defamation_after_penalty_2y": 365})
    assert legal(run(cascade_detectors(law=law), events), "defamation_after_penalty_2y") == []
    assert len(legal(run(cascade_detectors(), events), "defamation_after_penalty_2y")) == 1


def test_a_user_posting_without_any_case_never_gets_the_repeat_alert() -> None:
    events = [defamatory(0, "p1"), defamatory(DAY, "p2"), views(DAY + 60, "p2", 600)]
    assert legal(run(cascade_detectors(), events), "defamation_after_penalty_2y") == []


# -- 2019-15 Art. 16: a platform's refusals not yet dealt with add up -----------------------------------


def refusals(after_views: list[int], case_events: list[dict] = ()) -> list[dict]:
    """One refused order a day (100 days apart), each with ``after_views`` views after its deadline."""
    events = []
    for n, v in enumerate(after_views):
        minute = n * 100 * 1440
        events += [order(f"o{n}", minute, minute + 60, items=[{"post_id": f"q{n}"}]),
                   {**views(0, f"q{n}", 0), "ts": format_ts(START + (minute + 1) * 60)},
                   action(f"a{n}", f"o{n}", minute + 5, "refused"),
                   {**views(0, f"q{n}", v), "ts": format_ts(START + (minute + 70) * 60)}]
    return sorted(events + list(case_events), key=when)


def aggregated(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["kind"] == "duty_refusal" and "Interpretation 2019-15 Art. 16" in a["legal_refs"]]


@pytest.mark.parametrize("last,fires", [(9_999, False), (10_000, True), (10_001, True)])
def test_unhandled_refusals_within_two_years_add_up(last: int, fires: bool) -> None:
    alerts = run(ledger_detectors(), refusals([20_000, 20_000, last]))
    assert not [a for a in alerts if a["kind"] == "duty_refusal" and a["subject"]["type"] == "order"]
    found = aggregated(alerts)
    assert len(found) == (1 if fires else 0)
    if fires:
        e = found[0]["evidence"]
        assert found[0]["subject"] == {"type": "platform", "id": "weibo"}
        assert (e["grounds"], e["figures"], e["orders"], e["acts"]) == (
            ["dissemination_clicks_50000"], {"dissemination_clicks_50000": 40_000 + last}, ["o0", "o1", "o2"], 3)
        assert found[0]["ts"] == format_ts(START + (200 * 1440 + 70) * 60)


def test_two_refusals_are_not_yet_many() -> None:
    assert aggregated(run(ledger_detectors(), refusals([30_000, 30_000]))) == []


@pytest.mark.parametrize("decided_s,orders,excluded", [
    (-1, ["o0", "o1", "o2"], []),  # decided just before the first refusal: all count, three suffice
    (0, ["o1", "o2", "o3"], ["o0"]),  # at it: the first refusal is dealt with, the fourth is needed
    (1, ["o1", "o2", "o3"], ["o0"]),
])
def test_a_platform_case_takes_the_refusals_it_dealt_with_out(decided_s: float, orders: list[str],
                                                               excluded: list[str]) -> None:
    first_refusal = 5 * 60
    dealt = case(first_refusal + 60, "weibo", "penalty", "duty_refusal", kind="platform",
                 decided=first_refusal + decided_s)
    found = aggregated(run(ledger_detectors(), refusals([20_000, 20_000, 20_000, 20_000], [dealt])))
    assert len(found) == 1 and found[0]["evidence"]["orders"] == orders
    assert found[0]["evidence"]["excluded_as_dealt_with"] == excluded


def test_refusals_dealt_with_before_the_sum_crosses_do_not_add_up() -> None:
    dealt = case(150 * DAY, "weibo", "case_opened", "duty_refusal", kind="platform")
    assert aggregated(run(ledger_detectors(), refusals([20_000, 20_000, 20_000], [dealt]))) == []


def test_cases_give_the_same_alerts_in_process_and_partitioned_as_on_kafka() -> None:
    """A simulated hour with a defamation penalty of the rumour's author and a platform case:
    the in-process engine and the worker's routing over 3 partitions agree, roles included."""
    from streams.local import LocalPipeline
    from streams.partitioned import PartitionedPipeline
    from commands.simulator import START as SIM_START
    from commands.simulator import SimConfig, simulate_lines

    lines = list(simulate_lines(SimConfig(seed=5, minutes=12, organic_per_s=2, army_accounts=15, viral_reposts=600)))
    extra = [orjson.dumps({"type": "case", "event_id": "case-1", "platform": "weibo", "ts": format_ts(SIM_START + 1),
                           "case_id": "k1", "subject": {"type": "account", "id": "gossip-king"},
                           "action": "penalty", "conduct": "defamation", "decided_at": format_ts(SIM_START)}),
             orjson.dumps({"type": "case", "event_id": "case-2", "platform": "weibo", "ts": format_ts(SIM_START + 2),
                           "case_id": "k2", "subject": {"type": "platform", "id": "weibo"}, "action": "warning"})]
    lines = extra + lines

    def alerts_of(make) -> list[bytes]:
        out: list[bytes] = []
        letters: list = []
        pipeline = make(lambda a: out.append(a.to_json()), letters.append)
        for n, line in enumerate(lines, 1):
            pipeline.feed(line, f"t:{n}")
        pipeline.finish()
        assert letters == []
        return out

    one = alerts_of(lambda a, d: LocalPipeline(Settings(), a, d))
    many = alerts_of(lambda a, d: PartitionedPipeline(Settings(), 3, a, d))
    assert sorted(one) == sorted(many)
    repeat = [orjson.loads(a) for a in one if b"defamation_after_penalty_2y" in a]
    assert repeat and repeat[0]["evidence"]["account_id"] == "gossip-king"


@pytest.mark.kafka
def test_cases_on_kafka_give_the_same_alerts_as_replay(kafka_broker, stormwatch_bin: str, tmp_path) -> None:
    """Cases travel on the orders topic: the worker gives replay's alerts, roles included."""
    from commands.simulator import START as SIM_START
    from tests.support.worker import Worker
    from tests.test_kafka_pipeline import canonical
    from tests.test_replay import replay, write_scenario

    src = tmp_path / "events.jsonl"
    write_scenario(src)
    cases_ = [{"type": "case", "event_id": "case-1", "platform": "weibo", "ts": format_ts(SIM_START + 1),
               "case_id": "k1", "subject": {"type": "account", "id": "gossip-king"}, "action": "penalty",
               "conduct": "defamation", "decided_at": format_ts(SIM_START)},
              {"type": "case", "event_id": "case-2", "platform": "weibo", "ts": format_ts(SIM_START + 2),
               "case_id": "k2", "subject": {"type": "platform", "id": "weibo"}, "action": "warning"}]
    src.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in cases_) + src.read_bytes())
    expected, letters, _ = replay(stormwatch_bin, src, tmp_path, "replay")
    expected_alerts = [orjson.loads(line) for line in expected.splitlines()]
    assert letters == [] and any(b"defamation_after_penalty_2y" in line for line in expected.splitlines())
    worker = Worker(kafka_broker, stormwatch_bin, tmp_path).start()
    try:
        worker.produce(src)
        got = worker.read("alerts", until=len(expected_alerts))
    finally:
        worker.stop()
    assert canonical(got) == canonical(expected_alerts)


@pytest.mark.parametrize("n_cases", [1, 20, 21])
def test_the_same_case_sent_again_changes_nothing_past_the_cases_kept(n_cases: int) -> None:
    """A subject keeps its newest 20 cases (``MAX_CASES``); the 21st oldest, sent again under
    another event id, was no longer recognised: it reset the platform's Art. 16 sum and raised an
    extra ``duty_refusal`` version (a review's reproducer, session 20)."""
    def stream(resend: bool) -> list[dict]:
        events = []
        for n in range(4):  # four orders, each refused at once
            events += [order(f"o{n}", n, 10 + n, items=[{"post_id": f"p{n}"}]),
                       action(f"a{n}", f"o{n}", n + 0.5, "refused")]
        events += [case(20 * 60, "weibo", "penalty", "duty_refusal", kind="platform", decided=60, case_id=f"k{k:02d}")
                   for k in range(n_cases)]  # dealing with o0's refusal
        for minute in range(30, 60):  # the ordered posts are still viewed after their deadlines
            events += [{**views(minute * 60, f"p{n}", 1000 * (minute - 29)), "reposts": 0, "comments": 0, "likes": 0,
                        "reach_accounts": 100 * (minute - 29)} for n in range(4)]
            if resend and minute == 45:
                events.append(case(45 * 60, "weibo", "penalty", "duty_refusal", kind="platform", decided=60,
                                   case_id="k00"))
        return sorted(events, key=when) + [{"type": "tick", "ts": format_ts(START + 70 * 60)}]

    alerts = run(ledger_detectors(), stream(resend=False))
    assert aggregated(alerts)
    assert run(ledger_detectors(), stream(resend=True)) == alerts
