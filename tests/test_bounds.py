"""Bounds on every number, time, list and string of an input (docs/CONTRACT.md, "Bounds")."""

from __future__ import annotations

import json
import time

import orjson
import pytest


from events import DeadLetter, Post, decode, format_ts
from events.keys import parts
from events.records import Records, record_key
from events.models import MAX_COUNT
from detectors.targets import PostTargets, Targets, TargetSettings
from streams.engine import Engine
from streams.local import LocalPipeline
from streams.settings import Settings
from commands.simulator import SimConfig, simulate
from tests.support.events import action, order, post, tick

ENGAGEMENT = {"type": "engagement", "event_id": "e", "platform": "w", "ts": "2026-11-30T00:00:00Z", "post_id": "p"}
REPORT = {"type": "report", "event_id": "r", "platform": "w", "ts": "2026-11-30T00:00:00Z", "report_id": "r1",
          "reporter_id": "u1", "category": "insult"}


def raw(event: dict) -> bytes:
    return json.dumps(event).encode()  # json, not orjson: it writes integers of any size


def targets(n: int) -> list[dict]:
    return [{"id": f"t{i}"} for i in range(n)]


OUT_OF_BOUNDS = [
    # (event, text the error must contain: "<field path>: <problem>")
    ({**post("p1", 0), "ts": "0001-01-01T00:00:00+00:01"}, "post.ts: Input should be greater than or equal to 1970"),
    ({**post("p1", 0), "ts": "9999-12-31T23:59:59-01:00"}, "post.ts: Input should be less than 2100-01-01"),
    ({**post("p1", 0), "ts": "2100-01-01T00:00:00Z"}, "post.ts: Input should be less than 2100-01-01"),
    ({**post("p1", 0), "ts": "1969-12-31T23:59:59Z"}, "post.ts: Input should be greater than or equal to 1970"),
    ({**action("a1", "o1", 0, "completed"), "ts": "0001-01-01T00:00:00+00:01"}, "platform_action.ts: Input should be"),
    ({**tick(0), "ts": "9000-01-01T00:00:00Z"}, "tick.ts: Input should be less than"),
    ({**order("o1", 0, 60), "deadline": "0001-01-01T00:00:00+00:01"}, "order.deadline: Input should be greater"),
    ({**order("o1", 0, 60), "deadline": "9999-12-31T00:00:00Z"}, "order.deadline: Input should be less than"),
    ({**order("o1", 0, 60), "deadline": "2040-01-01T00:00:00Z"}, "order.deadline: Value error, a deadline is at most 10"),
    ({**post("p1", 0), "account": {"created_at": "0001-01-01T00:00:00+00:01"}}, "post.account.created_at: Input should"),
    ({**ENGAGEMENT, "views": 2**64}, "engagement.views: Input should be less than or equal to 9007199254740991"),
    ({**ENGAGEMENT, "reposts": 2**53}, "engagement.reposts: Input should be less than or equal to 9007199254740991"),
    ({**ENGAGEMENT, "likes": 10**400}, "engagement.likes: Input should be less than or equal"),
    ({**post("p1", 0), "account": {"followers": 2**63}}, "post.account.followers: Input should be less than or equal"),
    ({**post("p1", 0), "targets": targets(101)}, "post.targets: List should have at most 100 items"),
    ({**post("p1", 0), "targets": targets(4000)}, "post.targets: List should have at most 100 items"),
    ({**REPORT, "targets": targets(101)}, "report.targets: List should have at most 100 items"),
    ({**post("p1", 0), "hashtags": ["h"] * 101}, "post.hashtags: List should have at most 100 items"),
    ({**post("p1", 0), "urls": ["https://x.example/"] * 101}, "post.urls: List should have at most 100 items"),
    ({**post("p1", 0), "mentions": ["m"] * 101}, "post.mentions: List should have at most 100 items"),
    ({**post("p1", 0), "labels": ["insult"] * 101}, "post.labels: List should have at most 100 items"),
    ({**post("p1", 0), "urls": ["https://x.example/" + "a" * 2048]}, "post.urls.0: String should have at most 2048"),
    ({**post("p1", 0), "hashtags": ["ok", "h" * 2049]}, "post.hashtags.1: String should have at most 2048"),
    ({**post("p1", 0), "mentions": ["m" * 2049]}, "post.mentions.0: String should have at most 2048"),
    ({**post("p1", 0), "account": {"device_id": "d" * 257}}, "post.account.device_id: String should have at most 256"),
    ({**post("p1", 0), "account": {"ip_prefix": "1" * 257}}, "post.account.ip_prefix: String should have at most 256"),
    ({**order("o1", 0, 60), "measures": ["remove_content"] * 101}, "order.measures: List should have at most 100"),
    ({**order("o1", 0, 60), "items": [{"post_id": f"p{i}"} for i in range(1001)]}, "order.items: List should have at most 1000"),
    ({**action("a1", "o1", 0, "completed"), "items": [{"post_id": f"p{i}"} for i in range(1001)]},
     "platform_action.items: List should have at most 1000"),
]


@pytest.mark.parametrize("event,error", OUT_OF_BOUNDS, ids=[e.split(":")[0] + f"-{i}" for i, (_, e) in enumerate(OUT_OF_BOUNDS)])
def test_a_value_beyond_its_bound_is_dead_lettered_naming_the_field(event: dict, error: str) -> None:
    letter = decode(raw(event), "t")
    assert isinstance(letter, DeadLetter), letter
    assert letter.reason == "invalid_field" and error in letter.error, letter.error


AT_THE_BOUNDS = [
    {**post("p1", 0), "ts": "1970-01-01T00:00:00Z"},
    {**post("p1", 0), "ts": "2099-12-31T23:59:59.999999Z"},
    {**order("o1", 0, 0), "ts": "2026-11-30T00:00:00Z", "deadline": "2036-11-30T00:00:00Z"},  # 3653 days
    {**order("o1", 0, 0), "deadline": "2001-01-01T00:00:00Z"},  # before ts: the ledger judges it, not decode
    {**ENGAGEMENT, "views": MAX_COUNT, "reposts": 0},
    {**post("p1", 0), "targets": targets(100), "hashtags": ["h" * 2048] * 100, "urls": ["u"] * 100,
     "mentions": [""] * 100, "labels": ["insult"] * 100, "account": {"device_id": "d" * 256, "followers": MAX_COUNT}},
    {**order("o1", 0, 60), "items": [{"post_id": f"p{i}"} for i in range(1000)], "measures": ["report_back"] * 100},
]


@pytest.mark.parametrize("event", AT_THE_BOUNDS)
def test_values_at_their_bounds_are_valid(event: dict) -> None:
    assert not isinstance(decode(raw(event), "t"), DeadLetter)


def test_the_simulated_platform_is_within_every_bound() -> None:
    letters = [decode(orjson.dumps(event), "sim") for event in simulate(SimConfig())]
    assert not [x for x in letters if isinstance(x, DeadLetter)]


def ahead(seconds: float, **extra) -> dict:
    """A post dated ``seconds`` after the wall clock now."""
    return {**post("p-future", 0, **extra), "ts": format_ts(time.time() + seconds)}


def test_an_event_too_far_ahead_of_the_wall_clock_is_dead_lettered() -> None:
    now = time.time()
    letter = decode(raw(ahead(2 * 86400)), "t", now=now)
    assert isinstance(letter, DeadLetter) and letter.reason == "future_ts", letter
    assert letter.error.startswith("post.ts: ") and "ahead of the wall clock" in letter.error
    assert isinstance(decode(raw(ahead(3600)), "t", now=now), Post)  # within the default day
    assert isinstance(decode(raw(ahead(2 * 86400)), "t"), Post)  # no now: pure, as tests and buffers use it
    assert decode(raw({**tick(0), "ts": format_ts(now + 400 * 86400)}), "t", now=now).reason == "future_ts"
    assert isinstance(decode(raw(ahead(7200)), "t", now=now, max_future_s=3600), DeadLetter)


def test_a_future_post_in_a_replay_moves_no_event_time() -> None:
    """One post dated next year would pass every deadline and expire all state; it is refused."""
    alerts, letters = [], []
    pipeline = LocalPipeline(Settings(), alerts.append, letters.append)
    pipeline.feed(raw(order("o1", 0, 60)), "f:1")
    pipeline.feed(raw(ahead(365 * 86400)), "f:2")
    pipeline.feed(raw(post("p2", 5)), "f:3")
    assert [x.reason for x in letters] == ["future_ts"] and letters[0].source == "f:2"
    assert [a.kind for a in alerts] == []  # the order's deadline (minute 60) has not come
    pipeline.feed(raw(tick(120)), "f:4")
    assert [a.kind for a in alerts] == ["order_overdue"]


def test_the_future_tolerance_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORMWATCH_MAX_FUTURE_S", "600")
    letters = []
    pipeline = LocalPipeline(Settings(), lambda _a: None, letters.append)
    pipeline.feed(raw(ahead(1200)), "f:1")
    pipeline.feed(raw(ahead(300)), "f:2")
    assert [x.source for x in letters] == ["f:1"]


def test_a_target_record_keeps_a_bounded_number_of_co_victims() -> None:
    """N targets in one post stored N-1 co-victims in each of N records: 4,000 took 486 MB."""
    engine = Engine([Targets(TargetSettings(max_victims=50))])
    for k in range(3):
        named = [{"id": "x"}] + [{"id": f"v{k}-{i}"} for i in range(99)]
        event = {**post(f"p{k}", k, account=f"a{k}"), "labels": ["insult"], "targets": named}
        engine.process(decode(raw(event), "t"))
    engine.process(decode(raw(tick(10)), "t"))
    records = {ids[0]: rec for ids, rec in Records(engine.stages[0].state, lambda *_: None).of_kind("target")}
    assert len(records) == 1 + 3 * 99
    assert max(len(rec["victims"]) for rec in records.values()) == 50
    newest = sorted(parts(v)[1] for v in records["x"]["victims"])  # keyed by (platform, target)
    assert newest == sorted(f"v2-{i}" for i in range(49, 99))  # the newest post's, last 50


def test_a_targets_unknown_fields_stay_out_of_state() -> None:
    """Extras are kept on the event, not in state: a Faust table's JSON codec cannot write 2^70."""
    engine = Engine([PostTargets()])
    named = [{"id": "x", "minor": True, "note": 2**70, "blob": "b" * 50_000}]
    engine.process(decode(raw({**post("p1", 0), "labels": ["insult"], "targets": named}), "t"))
    engine.process(decode(raw(tick(10)), "t"))
    [rec] = [rec for rec in engine.stages[0].state.values() if isinstance(rec, dict) and "targets" in rec]
    assert rec["targets"] == [{"id": "x", "minor": True, "disabled": False, "public_figure": False}]
    orjson.dumps(rec)  # what a Faust table's json codec does


def test_a_target_record_keeps_a_bounded_scene() -> None:
    """Threads and hashtags are never windowed: a long attack with fresh ones grew them without end."""
    engine = Engine([Targets(TargetSettings(max_scene=200))])
    for k in range(300):
        event = {**post(f"p{k}", k / 10, account=f"a{k % 7}", parent_id=f"thread{k}"), "labels": ["insult"],
                 "targets": [{"id": "x"}], "hashtags": [f"h{k}", "common"]}
        engine.process(decode(raw(event), "t"))
    engine.process(decode(raw(tick(60)), "t"))
    scene = engine.stages[0].state[record_key("target", "x")]["scene"]
    threads = {parts(k)[1] for k in scene["thread"]}  # keyed by (platform, thread)
    hashtags = {parts(k)[1]: n for k, n in scene["hashtag"].items()}
    assert len(threads) == 200 and "thread299" in threads and "thread0" not in threads
    assert len(hashtags) == 200 and hashtags["common"] == 300


@pytest.mark.parametrize("partitions", [None, 4])
def test_a_platform_the_deployment_does_not_take_is_dead_lettered_naming_the_field(partitions: int | None) -> None:
    """``STORMWATCH_PLATFORMS`` bounds the platform names (each costs state in every stage
    partition it reaches): kuaishou's copy of the stream, and a tick naming it, are dead letters
    naming ``platform``; weibo's alerts are those it gets alone; a tick with no platform passes."""
    from streams.partitioned import PartitionedPipeline

    weibo = [orjson.dumps(e) for e in simulate(SimConfig(minutes=10, organic_per_s=2))]
    others = [orjson.dumps({**orjson.loads(line), "platform": "kuaishou"}) for line in weibo
              if orjson.loads(line)["type"] != "tick"]
    mixed = [line for pair in zip(weibo, others) for line in pair] + weibo[len(others):] + others[len(weibo):]
    mixed.append(orjson.dumps({**tick(5), "platform": "kuaishou"}))

    def run(lines: list[bytes], settings: Settings) -> tuple[list[str], list[DeadLetter]]:
        alerts, letters = [], []
        pipeline = (LocalPipeline(settings, lambda a: alerts.append(a.to_json()), letters.append) if partitions is None
                    else PartitionedPipeline(settings, partitions, lambda a: alerts.append(a.to_json()), letters.append))
        for n, line in enumerate(lines, 1):
            pipeline.feed(line, f"t:{n}")
        pipeline.finish()
        return sorted(alerts), letters

    taking = Settings(platforms="weibo, douyin")
    alone, letters = run(weibo, taking)
    assert alone and letters == []
    got, letters = run(mixed, taking)
    assert got == alone
    assert len(letters) == len(others) + 1 and {d.reason for d in letters} == {"invalid_field"}
    assert all(d.error.startswith(("post.platform: 'kuaishou' is not a platform this deployment takes",
                                   "engagement.platform:", "report.platform:", "order.platform:",
                                   "platform_action.platform:", "case.platform:", "tick.platform:")) for d in letters)
    assert any(d.error.startswith("tick.platform:") for d in letters)
    assert "douyin, weibo" in letters[0].error
    assert len(run(mixed, Settings())[1]) == 0  # unset: any platform is taken
