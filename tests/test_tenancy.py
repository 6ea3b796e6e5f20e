"""Platforms that do not trust each other: the same ids on two platforms never mix, hide or leak."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson

from events import format_ts
from events.keys import key, parts
from streams.outputs.api import Sources, handle
from commands.simulator import SimConfig, simulate
from tests.support.scenarios import T0
from tests.support.receiver import Receiver
from tests.test_duplicates import replay_in_process

SIM = SimConfig(minutes=20, organic_per_s=4)
TOKENS = {"reg": {"role": "regulator"}, "w": {"role": "platform", "platform": "weibo"},
          "d": {"role": "platform", "platform": "douyin"}}


def copied_for(*platforms: str) -> list[bytes]:
    """The simulated stream once per platform, every id (events, posts, orders, accounts) the same."""
    out = []
    for event in simulate(SIM):
        for platform in platforms:
            out.append(orjson.dumps({**event, "platform": platform}) if "platform" in event else orjson.dumps(event))
    return out


def latest(alerts: list[bytes]) -> dict[str, dict]:
    return {a["alert_id"]: a for a in map(orjson.loads, alerts)}


def comparable(alert: dict) -> tuple:
    """What must be the same for the same events on another platform (ids and wording aside)."""
    evidence = {k: v for k, v in alert["evidence"].items() if k not in ("merged_into",)}
    return alert["kind"], alert["version"], alert["severity"], alert["subject"]["type"], orjson.dumps(
        evidence, option=orjson.OPT_SORT_KEYS) if alert["kind"] != "water_army_campaign" else len(evidence["accounts"])


def test_a_stream_copied_for_two_platforms_gives_each_exactly_its_own_alerts() -> None:
    alone, _ = replay_in_process(copied_for("weibo"))
    both, letters = replay_in_process(copied_for("weibo", "douyin"))
    assert letters == []
    alone_latest, both_latest = latest(alone), latest(both)
    # violence_surge is keyed by the person attacked, who is attacked on both platforms now: a
    # finding across platforms (tested below); everything else is one platform's own.
    for platform in ("weibo", "douyin"):
        mine = sorted(comparable(a) for a in both_latest.values()
                      if a["platform"] == platform and a["kind"] != "violence_surge")
        assert mine == sorted(comparable(a) for a in alone_latest.values() if a["kind"] != "violence_surge")
    weibo_ids = {a for a, v in both_latest.items() if v["platform"] == "weibo" and v["kind"] != "violence_surge"}
    assert weibo_ids == {a for a, v in alone_latest.items() if v["kind"] != "violence_surge"}  # ids stay put
    surges = [a for a in both_latest.values() if a["kind"] == "violence_surge"]
    assert sorted((a["platform"], a.get("audience")) for a in surges) == [
        ("*", "regulator"), ("douyin", None), ("weibo", None)]
    # and each platform's own violence_surge versions are those it gets alone (plus the count)
    surges_of = lambda alerts: [a for a in map(orjson.loads, alerts) if a["kind"] == "violence_surge"]  # noqa: E731
    assert _own(surges_of(both), "weibo") == _own(surges_of(alone), "weibo") != []


def test_every_alert_version_of_both_platforms_reaches_the_webhook(stormwatch_bin: str, tmp_path: Path) -> None:
    """The outbox de-duplicates on (alert id, version): with ids scoped by platform, nothing of the
    second platform is taken for a copy of the first's (the critical order_refused included)."""
    src, out = tmp_path / "two.jsonl", tmp_path / "alerts.jsonl"
    src.write_bytes(b"\n".join(copied_for("weibo", "douyin")) + b"\n")
    receiver = Receiver().start()
    try:
        env = {**os.environ, "STORMWATCH_WEBHOOK_URLS": receiver.url}
        done = subprocess.run([stormwatch_bin, "replay", str(src), "--alerts-out", str(out)], env=env,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        versions = out.read_bytes().splitlines()
        raised = {(a["alert_id"], a["version"]) for a in map(orjson.loads, versions)}
        assert len(raised) == len(versions)  # no version of one platform shares an id with the other's
        delivered = [r["headers"]["webhook-id"] for r in receiver.accepted]
    finally:
        receiver.stop()
    assert len(delivered) == len(set(delivered)) == len(raised)
    assert {tuple(d.rsplit(":", 1)) for d in delivered} == {(a, str(v)) for a, v in raised}
    refused = [a for a in map(orjson.loads, out.read_bytes().splitlines()) if a["kind"] == "order_refused"]
    assert sorted(a["platform"] for a in refused) == ["douyin", "weibo"]


def test_each_role_reads_only_what_it_may() -> None:
    both, _ = replay_in_process(copied_for("weibo", "douyin"))
    alerts = latest(both)
    sources = Sources(alerts=alerts, ledger={}, now=lambda _platform: T0)
    seen = {}
    for token in TOKENS:
        status, body = handle("/api/alerts", {}, f"Bearer {token}", TOKENS, sources)
        assert status == 200
        seen[token] = body if isinstance(body, list) else body["alerts"]
    assert len(seen["reg"]) == len(alerts)
    for token, platform in (("w", "weibo"), ("d", "douyin")):
        assert seen[token] and {a["platform"] for a in seen[token]} == {platform}
        assert not any(a.get("audience") for a in seen[token])
        other = "douyin" if platform == "weibo" else "weibo"
        assert other not in orjson.dumps(seen[token]).decode()


def hostile_cascade(platform: str, post_id: str, reposts: int, minute0: float) -> list[dict]:
    base = {"platform": platform, "type": "post"}
    events = [{**base, "event_id": f"{platform}|root", "ts": _at(minute0), "post_id": post_id, "account_id": "a",
               "kind": "original", "labels": ["defamation"], "text": "谣言"}]
    for n in range(reposts):
        events.append({**base, "event_id": f"{platform}|{n}", "ts": _at(minute0 + 1 + n / 100),
                       "post_id": f"{post_id}-rp{n}", "account_id": f"r{n}", "kind": "repost",
                       "parent_id": post_id, "root_id": post_id})
    return events


def _at(minute: float) -> str:
    from events import format_ts
    return format_ts(T0 + minute * 60)


def test_ids_with_tabs_cannot_reach_another_platforms_state() -> None:
    """Before keys were escaped, platform "w" with post "i\\tX" and platform "w\\ti" with post "X"
    shared one state key: one platform's reposts counted towards the other's legal figure."""
    victim = hostile_cascade("w", "i\tX", 300, 0)
    attacker = hostile_cascade("w\ti", "X", 300, 0.5)
    events = sorted(victim + attacker, key=lambda e: e["ts"])
    alerts, letters = replay_in_process([orjson.dumps(e) for e in events])
    assert letters == []
    crossed = [a for a in map(orjson.loads, alerts) if a["kind"] == "legal_threshold"]
    assert crossed == []  # 300 reposts each: neither reaches 500, together they would have


def test_keys_round_trip_whatever_the_ids_hold() -> None:
    for ids in [("a\tb", "c"), ("a", "b\tc"), ("a\\", "t"), ("a\\t", "x"), ("~seen", "0", "1"), ("", "\\\\t\t")]:
        assert parts(key(*ids)) == list(ids)
    assert key("a\tb", "c") != key("a", "b\tc")
    assert "\t" not in key("~seen\t0\t1")  # no id names an internal (tab-joined) key


def test_hostile_inputs_leave_every_endpoint_answering_with_the_rest_intact(tmp_path: Path) -> None:
    """The issue's hostile lines fed to the demo: every endpoint, every role, 200 and the
    ordinary orders still there."""
    import json

    import httpx

    from tests.support.demo import demo_serving
    from tests.support.events import action, order, tick

    good = [order("ok-1", 0, 30), action("a-ok", "ok-1", 5, "completed"), order("ok-2", 0, 30, platform="douyin")]
    hostile = [
        {**action("a-old", "ok-1", 6, "acknowledged"), "ts": "0001-01-01T00:00:00+00:01"},
        {**order("tab\torder", 1, 40), "case_id": "x\ty"},
        order("o", 1, 40, platform="weibo\to"),  # the platform named like an internal key
        {**order("far", 2, 50), "ts": "+10000-01-01T00:00:00Z"},
        {**order("[/oops]", 2, 50), "legal_basis": "\x1b[2J[bold]x"},
        {"type": "engagement", "event_id": "huge", "platform": "weibo", "ts": "2026-11-30T08:03:00+08:00",
         "post_id": "p1", "views": 2 ** 64},
    ]
    src = tmp_path / "hostile.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in [*good, *hostile, tick(120)]) + "\n")
    with demo_serving(src, TOKENS) as base:
        for token in TOKENS:
            for path in ("/api/alerts", "/api/orders", "/api/campaigns", "/api/cascades",
                         "/api/platforms/weibo/scorecard", "/api/platforms/douyin/scorecard"):
                answer = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=5)
                assert answer.status_code in (200, 403), (token, path, answer.status_code)
                if token == "reg" or path.endswith(f"/{TOKENS[token].get('platform')}/scorecard"):
                    assert answer.status_code == 200, (token, path)
        orders = httpx.get(base + "/api/orders", headers={"Authorization": "Bearer reg"}, timeout=5).json()
        ids = {o["order_id"] for o in (orders if isinstance(orders, list) else orders["orders"])}
        assert {"ok-1", "ok-2", "tab\torder", "o", "[/oops]"} <= ids
        mine = httpx.get(base + "/api/orders", headers={"Authorization": "Bearer w"}, timeout=5).json()
        assert {o["platform"] for o in (mine if isinstance(mine, list) else mine["orders"])} == {"weibo"}


def test_a_platforms_webhook_never_gets_the_regulators_cross_platform_alert() -> None:
    from streams.outputs.delivery import EndpointConfig

    both, _ = replay_in_process(copied_for("weibo", "douyin"))
    alerts = list(latest(both).values())
    weibo_hook = EndpointConfig(url="http://127.0.0.1:1/weibo", platforms=["weibo"])
    regulator_hook = EndpointConfig(url="http://127.0.0.1:1/cac")
    assert {a["platform"] for a in alerts if weibo_hook.wants(a)} == {"weibo"}
    assert not any(a.get("audience") for a in alerts if weibo_hook.wants(a))
    assert sum(1 for a in alerts if regulator_hook.wants(a)) == len(alerts)


# -- violence_surge: a target attacked on several platforms ------------------------------------------
# Each platform's own alert is judged on that platform's events alone: the same alerts (versions,
# times, severity, aggravating, figures, evidence) as if no other platform existed, apart from
# evidence.cross_platform (the regulator's alert and how many platforms are involved).


def _surge_event(kind: str, n: int, minute: float, platform: str, target: dict | None = None, **fields) -> dict:
    event = {"type": kind, "event_id": f"{platform}-{kind}-{n}", "platform": platform,
             "ts": format_ts(T0 + minute * 60), "targets": [target or {"id": "T"}], **fields}
    if kind == "post":
        event = {"post_id": f"{platform}-p{n}", "account_id": f"{platform}-u{n}", "kind": "original",
                 "labels": ["insult"], **event}
    else:
        event = {"report_id": f"{platform}-r{n}", "reporter_id": f"{platform}-reporter{n}",
                 "post_id": f"{platform}-secret-post", "category": "insult", **event}
    return event


def _surges(events: list[dict]) -> list[dict]:
    from detectors.targets import PostTargets, Targets
    from events import decode
    from streams.engine import Engine

    engine = Engine([PostTargets(), Targets()])
    out = []
    for raw in sorted(events, key=lambda e: (e["ts"], e["event_id"])) + [
            {"type": "tick", "ts": format_ts(T0 + 30 * 86400)}]:
        out.extend(a.model_dump(mode="json") for a in engine.process(decode(orjson.dumps(raw), "t")))
    assert not engine.failures
    return [a for a in out if a["kind"] == "violence_surge"]


def _own(alerts: list[dict], platform: str) -> list[dict]:
    """A platform's violence_surge versions, less what may tell it of other platforms."""
    return [{**a, "evidence": {k: v for k, v in a["evidence"].items() if k != "cross_platform"}}
            for a in alerts if a["platform"] == platform]


def _assert_isolated(mine: list[dict], others: list[dict], platform: str) -> list[dict]:
    """``platform``'s alerts are the same with and without the other platform's events."""
    alone, both = _surges(mine), _surges(mine + others)
    assert _own(both, platform) == _own(alone, platform)
    assert all(a["platform"] != "unknown" for a in both)
    return both


def test_an_earlier_attack_on_another_platform_hides_nothing() -> None:
    """T1: douyin's 20 attackers made the next version need 40; weibo's 10 raised nothing."""
    douyin = [_surge_event("post", n, n / 2, "douyin") for n in range(20)]
    weibo = [_surge_event("post", n, 30 + n, "weibo") for n in range(10)]
    both = _assert_isolated(weibo, douyin, "weibo")
    assert [a["version"] for a in both if a["platform"] == "weibo"] == [1]
    assert _own(both, "douyin") == _own(_surges(douyin), "douyin")
    regulator = [a for a in both if a["platform"] == "*"]
    assert regulator and regulator[-1]["audience"] == "regulator"
    assert regulator[-1]["evidence"]["platforms"] == ["douyin", "weibo"]
    assert {a["evidence"]["cross_platform"]["platforms"] for a in both if a["platform"] == "weibo"} == {2}


def test_reports_count_for_the_platform_that_sent_them() -> None:
    """T2: weibo's reports (naming weibo's own post) went into douyin's alert, and weibo got none."""
    douyin = [_surge_event("post", n, n / 2, "douyin") for n in range(10)]
    weibo = [_surge_event("report", n, 1 + n / 10, "weibo") for n in range(10)]
    both = _assert_isolated(douyin, weibo, "douyin")
    assert not any("weibo" in orjson.dumps(a).decode() for a in both if a["platform"] == "douyin")
    _assert_isolated(weibo, douyin, "weibo")
    assert [a["evidence"]["reports_by_item"] for a in both if a["platform"] == "weibo"] == [
        {"post:weibo-secret-post": 10}]


def test_reports_from_two_platforms_never_make_an_alert_for_platform_unknown() -> None:
    """T3: five reports each from weibo and douyin were raised for a platform "unknown" (one a real
    platform could be named); neither platform alone has a surge, the regulator sees the whole."""
    weibo = [_surge_event("report", n, 1 + n / 10, "weibo") for n in range(5)]
    douyin = [_surge_event("report", n, 1.05 + n / 10, "douyin") for n in range(5)]
    both = _assert_isolated(weibo, douyin, "weibo")
    _assert_isolated(douyin, weibo, "douyin")
    assert [(a["platform"], a.get("audience")) for a in both] == [("*", "regulator")]
    assert both[0]["evidence"]["reports"] == 10
    unknown = [{**e, "platform": "unknown"} for e in douyin]  # a platform that is named "unknown"
    assert _own(_surges(weibo + unknown), "unknown") == []


def test_another_platforms_circumstances_stay_out_of_a_platforms_alert() -> None:
    """T4: douyin's claim that the target is a minor, its sexual rumour and its platform-run account
    made weibo's alert critical, halved weibo's thresholds and named douyin's aggravations."""
    minor = {"id": "T", "minor": True}
    douyin = [_surge_event("post", 0, 1, "douyin", minor, labels=["sexual_rumor"],
                           account={"platform_operated": True})]
    weibo = [_surge_event("post", n, 10 + n, "weibo") for n in range(10)]
    both = _assert_isolated(weibo, douyin, "weibo")
    [own] = [a for a in both if a["platform"] == "weibo"]
    assert own["severity"] == "warning" and own["aggravating"] == [] and own["evidence"]["account_count"] == 10
    regulator = [a for a in both if a["platform"] == "*"]  # the regulator's whole finding keeps them
    assert regulator and {"minor_target", "sexual_topic", "provider_organized"} <= set(regulator[-1]["aggravating"])
