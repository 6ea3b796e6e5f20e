"""One event time per platform: no platform's clock moves another's alerts (CONTRACT, Tenancy).

A platform may stamp its events ahead of the others (up to ``STORMWATCH_MAX_FUTURE_S``) or
behind them. Each platform's deadlines, expiry, ordering and lateness go by its own events (and
by ticks, which carry no platform); the targets stage, whose whole record spans platforms, goes
by the earliest platform, so a lagging platform delays its alerts and changes none.
"""

from __future__ import annotations

import math
from datetime import datetime

import orjson
import pytest

from commands.simulator import SimConfig, simulate
from events import format_ts
from events.watermark import Watermark
from streams.local import LocalPipeline
from streams.partitioned import PartitionedPipeline
from streams.settings import Settings
from tests.support.scenarios import T0

SIM = SimConfig(minutes=20, organic_per_s=3)


def as_platform(platform: str, shift_s: float) -> list[dict]:
    """The simulated stream as ``platform``, its clock ``shift_s`` off; its ticks name it."""
    out = []
    for event in simulate(SIM):
        ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp() + shift_s
        out.append({**event, "platform": platform, "ts": format_ts(ts)})
    return out


def run(events: list[dict], partitions: int | None) -> tuple[list[dict], list[dict]]:
    alerts, letters = [], []
    on_alert, on_letter = (lambda a: alerts.append(orjson.loads(a.to_json()))), (lambda d: letters.append(d.to_record()))
    pipeline = (LocalPipeline(Settings(), on_alert, on_letter) if partitions is None
                else PartitionedPipeline(Settings(), partitions, on_alert, on_letter))
    for n, event in enumerate(events, 1):
        pipeline.feed(orjson.dumps(event), f"t:{n}")
    pipeline.finish()
    return alerts, letters


def own(alerts: list[dict], platform: str) -> list[bytes]:
    """A platform's alert versions, less what tells it how many other platforms share a target."""
    return sorted(orjson.dumps({**a, "evidence": {k: v for k, v in a["evidence"].items() if k != "cross_platform"}},
                               option=orjson.OPT_SORT_KEYS) for a in alerts if a["platform"] == platform)


def naming_others(event: dict) -> dict:
    """The event with its targets renamed (``d-`` before each id): another platform's copy of an
    attack that names other persons, so no alert of one platform carries ``cross_platform``."""
    if not event.get("targets"):
        return event
    return {**event, "targets": [{**target, "id": f"d-{target['id']}"} for target in event["targets"]]}


def interleaved(*streams: list[dict]) -> list[dict]:
    """The streams as they would arrive together: one event of each in turn, whatever its ts."""
    out = []
    for n in range(max(map(len, streams))):
        out.extend(stream[n] for stream in streams if n < len(stream))
    return out


@pytest.mark.parametrize("partitions", [None, 4])
@pytest.mark.parametrize("shift_s", [23 * 3600, 95, -3 * 3600])
def test_another_platforms_clock_changes_none_of_a_platforms_alerts(shift_s: float, partitions: int | None) -> None:
    """The simulated stream for weibo, and the same stream (same ids) for douyin with its clock
    off by ``shift_s`` (a day ahead, a minute and a half ahead, hours behind), arriving
    together: each platform's alerts are those it gets alone, in process and on four partitions."""
    weibo, douyin = as_platform("weibo", 0), as_platform("douyin", shift_s)
    both, letters = run(interleaved(weibo, douyin), partitions)
    assert letters == []
    for platform, stream in (("weibo", weibo), ("douyin", douyin)):  # the one whose clock is off too
        alone, letters = run(stream, partitions)
        assert letters == [] and alone
        assert own(both, platform) == own(alone, platform)


def test_a_platform_stamping_ahead_fires_no_deadline_of_another_nor_makes_its_action_late() -> None:
    """KNOWN-PROBLEMS' reproducer (session 20): douyin's posts stamped 23 hours ahead came
    between weibo's order and weibo's on-time action; weibo's order went overdue and its
    action was dead-lettered as late."""
    def at(minutes: float) -> str:
        return format_ts(T0 + minutes * 60)

    weibo = [{"type": "order", "event_id": "o", "platform": "weibo", "ts": at(0), "order_id": "o1",
              "regulator": "cac", "deadline": at(60), "measures": ["remove_content"],
              "items": [{"post_id": "p1"}]},
             {"type": "platform_action", "event_id": "a", "platform": "weibo", "ts": at(50), "action_id": "a1",
              "order_id": "o1", "action": "content_removed"},
             {"type": "platform_action", "event_id": "c", "platform": "weibo", "ts": at(55), "action_id": "a2",
              "order_id": "o1", "action": "completed"}]
    douyin = [{"type": "post", "event_id": f"d{n}", "platform": "douyin", "ts": at(23 * 60 + n), "post_id": f"p{n}",
               "account_id": "u", "kind": "original", "text": ""} for n in range(3)]
    for partitions in (None, 4):
        alone, letters = run(weibo, partitions)
        assert letters == []
        both, letters = run([weibo[0], douyin[0], douyin[1], weibo[1], douyin[2], weibo[2]], partitions)
        assert letters == []
        assert own(both, "weibo") == own(alone, "weibo")
        assert not any(a["kind"] == "order_overdue" for a in both)


def test_each_platform_has_its_own_time_and_ticks_move_them_all() -> None:
    wm = Watermark(["a", "b"], lateness=10)
    assert wm.observe("a", 100, "weibo") == [] and wm.of("weibo") == -math.inf  # b has said nothing for it
    assert wm.observe("b", 500, "douyin") == []
    assert wm.observe("b", 50, "weibo") == ["weibo"] and wm.of("weibo") == 40
    assert wm.of("douyin") == -math.inf  # weibo's events moved only weibo
    assert wm.least() == -math.inf
    assert wm.observe("a", 1000) == ["douyin"]  # a tick from a: every lane it holds back (weibo waits for b)
    assert wm.of("weibo") == 40 and wm.of("douyin") == 490 and wm.floor == -math.inf
    assert wm.observe("b", 2000, "weibo") == ["weibo"] and wm.of("weibo") == 990  # a platform's tick: its lane
    assert wm.observe("b", 3000) == [None, "douyin"]  # the floor (platforms not seen yet) and douyin
    assert wm.floor == 990 and wm.least() == 990 and wm.of("kuaishou") == 990
    restored = Watermark(["a", "b"], lateness=10)
    restored.restore(orjson.loads(orjson.dumps(wm.dump())))
    assert restored.values == wm.values and restored.floor == wm.floor
    before_lanes = Watermark(["a", "b"], lateness=10)
    before_lanes.restore({"a": 100.0, "b": 70.0})  # what a worker stored before lanes: read as ticks
    assert before_lanes.floor == 60 and before_lanes.of("weibo") == 60


def _targeted(n: int, minute: float, author: str, target: str, platform: str, harmful: bool = True, **flags) -> dict:
    """A post about ``target`` (an insult, or a harmless one)."""
    return {"type": "post", "event_id": f"{platform}-e{n}", "platform": platform, "ts": format_ts(T0 + minute * 60),
            "post_id": f"p{n}", "account_id": author, "kind": "original",
            "text": "垃圾一个，早点消失吧" if harmful else "hello", "labels": ["insult"] if harmful else [],
            "targets": [{"id": target, **flags}]}


@pytest.mark.parametrize("partitions", [None, 4])
def test_a_platform_ahead_keeps_none_of_anothers_target_records_past_their_time(partitions: int | None) -> None:
    """A review's reproducer (session 21): douyin names Y as a minor, then 30 hours later six
    attackers post about Y; alone, the first record expired after 24 hours (an adult's threshold
    is 10: no alert). weibo's two harmless posts stamped three days ahead, arriving first, had
    swept the targets stage's expiry past douyin's time: the record never expired, the minor
    flag halved the threshold, and douyin got a critical violence_surge."""
    douyin = [_targeted(0, 0, "b0", "Y", "douyin", minor=True)] + [
        _targeted(100 + k, 30 * 60 + k, f"c{k}", "Y", "douyin") for k in range(6)]
    weibo = [_targeted(0, 3 * 1440, "z", "other", "weibo", harmful=False),
             _targeted(1, 3 * 1440 + 5, "z", "other", "weibo", harmful=False)]
    assert run(douyin, partitions)[0] == []
    assert own(run(weibo + douyin, partitions)[0], "douyin") == []


def test_a_wall_clock_tick_is_forwarded_once_whatever_the_number_of_platforms() -> None:
    """After a tick with no platform, a stage forwards the ticks' time once, not one tick per
    platform (a review measured 98 s of CPU for 1,000 one-post platforms and 50 ticks on four
    partitions, against 1.3 s before lanes)."""
    from events import Tick

    events = [_targeted(k, k / 100, "u", "X", f"pf{k}", harmful=False) for k in range(200)]
    ticks = [{"type": "tick", "ts": format_ts(T0 + (3 + j) * 60)} for j in range(10)]
    pipeline = PartitionedPipeline(Settings(), 4, lambda _a: None, lambda _d: None)
    named, stage = [0], pipeline._stage

    def counting(name, event, *rest):  # noqa: ANN001, ANN202
        named[0] += isinstance(event, Tick) and event.platform is not None
        return stage(name, event, *rest)

    pipeline._stage = counting
    for n, event in enumerate(events, 1):
        pipeline.feed(orjson.dumps(event), f"t:{n}")
    pipeline.feed(orjson.dumps(ticks[0]), "tick:1")  # releases what waited: its events forward their platform's time
    released = named[0]
    for n, event in enumerate(ticks[1:], 2):
        pipeline.feed(orjson.dumps(event), f"tick:{n}")
    assert named[0] == released  # nine more ticks: nothing named (before, 200 platforms x 4 x 4 per tick)


def test_a_seen_record_from_before_lanes_keeps_every_platforms_copies_out() -> None:
    """A review's reproducer: a seen record written before lanes held every platform's ids; read
    back into the lane of its first id's platform, it was swept when that platform's time moved,
    and the other platform's redelivered order was taken again within its own window. It is
    now split into one record per platform when read back."""
    from detectors.orders import ledger_detectors
    from events import decode
    from streams.engine import SEEN, Engine
    from tests.support.events import at, order
    from tests.test_engine import TableLike

    tables: dict = {}
    engine = Engine(ledger_detectors(), state_factory=lambda n: tables.setdefault(n, TableLike()), durable_buffers=True)
    weibo, douyin = order("oA", 0, 600, platform="weibo"), order("oB", 0, 600, platform="douyin")
    for raw in (weibo, douyin):
        engine.process(decode(orjson.dumps(raw), "t"))
    state = tables["order_watch"]
    lanes = [k for k in list(state) if k.startswith(SEEN)]
    assert len(lanes) == 2  # one record per platform
    merged: dict = {}
    for k in sorted(lanes, key=lambda k: "douyin" in k):  # the older format: one record, weibo's id first
        merged.update(state[k]["ids"])
        until = state[k]["until"]
        del state[k]
    state[f"{SEEN}0\t{lanes[0].split(chr(9))[2]}"] = {"until": until, "ids": merged}
    restarted = Engine(ledger_detectors(), state_factory=lambda n: tables.setdefault(n, TableLike()),
                       durable_buffers=True)
    restarted.process(decode(orjson.dumps(order("oA2", 120, 600, platform="weibo")), "t"))  # weibo two hours on
    restarted.process(decode(orjson.dumps({**douyin, "ts": at(1)}), "t"))  # douyin's order again, in its window
    assert restarted.copies == 1 and not restarted.drain_failures()


def test_what_the_targets_stage_holds_for_a_lagging_platform_holds_the_time_sent_to_the_evidence_log() -> None:
    """The targets stage goes by the earliest platform: weibo's post about X waits while douyin
    lags, and so do the times a stage tells the evidence stage (each platform's log would
    otherwise record weibo's later events before the alert that cites this one)."""
    from events import decode
    from streams.engine import Engine
    from streams.kafka.batches import Outbox
    from streams.kafka.evidence import EvidenceStage
    from streams.kafka.stage import tick_json
    from streams.registry import build_detectors

    targets = [d for d in build_detectors(Settings()) if d.name == "targets"]
    engine = Engine(targets, lateness=30)
    assert engine.held_from() == math.inf
    for n, minute, author, target, platform in ((0, 0, "b", "Y", "douyin"), (1, 1, "b", "Y", "douyin"),
                                                (2, 60, "a", "X", "weibo"), (3, 90, "a", "X", "weibo")):
        engine.process(decode(orjson.dumps(_targeted(n, minute, author, target, platform)), "t"))
    # douyin's time (its post at minute 1, less the lateness) holds everything after minute 1 back,
    # weibo's post at minute 60 too, though weibo's own time is past it
    assert engine.held_from() == T0 + 60 and engine.watermark().of("weibo") == T0 + 90 * 60 - 30

    outbox = Outbox()
    stage = type("Stage", (), {"settings": Settings(partitions=2), "forwarded": {}, "tick_json": staticmethod(tick_json)})
    EvidenceStage.stage_output(stage, outbox, "targets", 0, [], engine.watermark(), ["weibo"], False, engine.held_from())
    sent = [orjson.loads(value) for entries in outbox.entries.values() for _key, value in entries]
    assert len(sent) == 2 and {(t["ts"], t["platform"]) for t in sent} == {(format_ts(T0 + 60), "weibo")}

    engine.process(decode(orjson.dumps(_targeted(4, 120, "b", "Y", "douyin")), "t"))  # douyin catches up
    assert engine.held_from() == T0 + 90 * 60  # weibo's second post waits for weibo's own time only


def test_a_watermarks_lanes_equal_the_minimum_over_its_sources_whatever_the_order() -> None:
    """The lanes a Watermark keeps incrementally (it skips sources that do not hold a lane back
    and forgets a platform's times the ticks cover: a review measured 1.2 s of CPU per round of
    wall-clock ticks for 1,000 platforms over 56 sources) equal the definition, taken afresh
    after every step of random streams: per platform, the minimum over sources of the later of
    the source's last tick and the platform's latest event there, less the lateness; and so do
    the lanes that moved, and a restored copy. A source the watermark was not built with may
    appear (it starts behind the others): a lane never goes back, so each lane is then the
    latest its definition reached, and a platform first seen starts at the floor."""
    import random

    for seed in range(60):
        rng = random.Random(seed)
        sources = [f"s{k}" for k in range(rng.randint(1, 5))]
        platforms = [f"p{k}" for k in range(rng.randint(1, 4))]
        wm = Watermark(list(sources), lateness=7)
        ticks = {s: -math.inf for s in sources}
        own: dict = {}
        floor, expected = -math.inf, {}
        for _step in range(200):
            if seed % 2 and rng.random() < 0.02:  # a source it was not built with
                sources.append(f"new{_step}")
            source, ts = rng.choice(sources), float(rng.randint(0, 400))
            platform = rng.choice(platforms + [None])
            ticks.setdefault(source, -math.inf)  # known from its first message on
            before = dict(expected)
            moved = wm.observe(source, ts, platform)
            if platform is None:
                ticks[source] = max(ticks[source], ts)
                floor = max(floor, min(ticks.values()) - 7)
            else:
                expected.setdefault(platform, floor)
                own.setdefault(platform, {})[source] = max(own.get(platform, {}).get(source, -math.inf), ts)
            for p in own:
                expected[p] = max(expected[p], min(max(t, own[p].get(s, -math.inf)) for s, t in ticks.items()) - 7)
            assert wm.floor == floor and wm.values == expected, (seed, _step)
            assert {p for p in moved if p is not None} == {p for p in expected if expected[p] > before.get(p, floor)}
            assert wm.least() == min(expected.values(), default=floor)
        if seed % 2 == 0:  # (a restored copy recomputes from the times alone: no lane held up)
            restored = Watermark(sources, lateness=7)
            restored.restore(orjson.loads(orjson.dumps(wm.dump())))
            assert restored.values == wm.values and restored.floor == wm.floor, seed
