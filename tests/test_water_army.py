"""Water-army campaigns: planted campaigns found, the organic hard cases left alone."""

from __future__ import annotations

import random

import orjson
import pytest

from detectors.water_army import WaterArmy, WaterArmySettings, water_army_detectors
from events import decode, format_ts
from events.records import Records
from streams.engine import Engine
from tests.support.events import feed
from tests.support.scenarios import T0, Stream
from tests.test_engine import TableLike

TARGET = {"id": "victim-1", "name": "林某"}


def run(events: list[dict], settings: WaterArmySettings | None = None, engine: Engine | None = None) -> list[dict]:
    return feed(engine or Engine(water_army_detectors(settings)), events)


def campaigns(alerts: list[dict]) -> list[dict]:
    """The latest version of each live campaign alert, as a consumer would keep them."""
    latest: dict[str, dict] = {}
    for alert in alerts:
        if alert["kind"] == "water_army_campaign":
            latest[alert["alert_id"]] = alert
    return [a for a in latest.values() if "merged_into" not in a["evidence"]]


def flagged(alerts: list[dict]) -> set[str]:
    return {acc for a in campaigns(alerts) for acc in a["evidence"]["accounts"]}


def army(n: int, prefix: str = "army") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def test_a_planted_campaign_is_found_with_its_evidence() -> None:
    s = Stream(seed=3)
    s.organic(accounts=400, posts=3000, minutes=240)
    members = army(30)
    s.campaign(members, waves=6, every_min=30, width_min=2, start=20, target=TARGET)
    alerts = run(s.sorted_events())
    found = campaigns(alerts)
    assert len(found) == 1
    accounts = set(found[0]["evidence"]["accounts"])
    assert accounts <= set(members)
    assert len(accounts) >= 0.9 * len(members)
    alert = found[0]
    assert alert["aggravating"] == ["water_army"] and alert["subject"]["type"] == "campaign"
    assert 0 < alert["evidence"]["score"] <= 1
    assert alert["evidence"]["posts"] and any(o.startswith("text:") for o in alert["evidence"]["objects"])
    versions = [a["version"] for a in alerts if a["alert_id"] == alert["alert_id"]]
    assert versions == list(range(1, len(versions) + 1))  # one id while it grows


def test_organic_news_bursts_flag_no_one() -> None:
    """Hundreds of unrelated accounts, same hashtag and headline, own words, within minutes; four times."""
    s = Stream(seed=4)
    s.organic(accounts=1500, posts=4000, minutes=300)
    for burst in range(4):
        tag, url = f"突发新闻{burst}", f"https://news.example/{burst}"
        for account in random.Random(burst).sample(range(1500), 400):
            minute = 30 + burst * 60 + s.rng.random() * 5
            s.post(minute, f"u{account}", f"{s.words(s.rng.randrange(4, 10))} 地震了 {url}", urls=[url],
                   hashtags=[tag])
    assert flagged(run(s.sorted_events())) == set()


def test_an_organic_viral_repost_storm_flags_no_one() -> None:
    s = Stream(seed=5)
    s.organic(accounts=2000, posts=3000, minutes=240)
    for storm in range(3):
        root = s.post(10 + storm * 70, "celebrity", f"大新闻{storm}" + s.words(8))
        for account in random.Random(10 + storm).sample(range(2000), 500):
            s.post(11 + storm * 70 + s.rng.random() * 10, f"u{account}", "转发", "repost", root)
    assert flagged(run(s.sorted_events())) == set()


def test_a_small_slow_campaign_with_heavy_variation_is_found() -> None:
    """About 25 accounts, waves 10-15 minutes wide, heavier text variation.

    Two characters of each ~21-character insult are replaced and punctuation or emoji added:
    the pairwise bigram Jaccard of two variants is about 0.48 (median; 0.43 at worst).
    """
    s = Stream(seed=6)
    s.organic(accounts=500, posts=3000, minutes=420)
    members = army(25, "slow")
    s.campaign(members, waves=6, every_min=70, width_min=13, start=15, target=TARGET, edits=2)
    found = flagged(run(s.sorted_events()))
    assert found <= set(members)
    assert len(found) >= 0.9 * len(members)


def test_a_campaign_mixing_text_waves_and_reposts_of_a_leader_is_found() -> None:
    s = Stream(seed=7)
    s.organic(accounts=500, posts=3000, minutes=300)
    members = army(20, "mix")
    s.campaign(members, waves=3, every_min=60, width_min=3, start=10, target=TARGET)
    for wave in range(3):
        lead = s.post(40 + wave * 60, "leader", "大家看看林某的真面目" + s.words(6))
        for account in members:
            if s.rng.random() < 0.85:
                s.post(40.5 + wave * 60 + s.rng.random() * 2, account, "转发", "repost", lead)
    found = flagged(run(s.sorted_events()))
    assert found <= set(members)
    assert len(found) >= 0.9 * len(members)


def test_members_who_also_post_ordinary_content_are_still_found() -> None:
    s = Stream(seed=8)
    s.organic(accounts=300, posts=2000, minutes=300)
    members = army(20, "busy")
    for account in members:  # plenty of ordinary posts each
        for _ in range(25):
            s.post(s.rng.random() * 300, account, s.words(s.rng.randrange(5, 12)))
    s.campaign(members, waves=5, every_min=50, width_min=2, start=20, target=TARGET)
    found = flagged(run(s.sorted_events()))
    assert found <= set(members) and len(found) >= 0.9 * len(members)


def test_aggravating_circumstances_come_from_the_members_content() -> None:
    s = Stream(seed=9)
    members = army(12, "agg")
    s.campaign(members, waves=4, every_min=20, width_min=2, start=0, target={**TARGET, "minor": True},
               synthetic=True, account={"platform_operated": True})
    for event in s.events:
        event["labels"] = ["insult", "sexual_rumor"]
    [alert] = campaigns(run(s.sorted_events()))
    assert set(alert["aggravating"]) == {"water_army", "minor_target", "sexual_topic", "deep_synthesis",
                                         "provider_organized"}
    assert alert["severity"] == "critical"


def test_shadow_mode_marks_alerts() -> None:
    s = Stream(seed=10)
    s.campaign(army(10), waves=4, every_min=20, width_min=2, start=0, target=TARGET)
    live = run(s.sorted_events())
    shadow = run(s.sorted_events(), WaterArmySettings(shadow=True))
    assert live and all("shadow" not in a for a in live)
    assert [a["alert_id"] for a in shadow] == [a["alert_id"] for a in live]
    assert all(a["shadow"] is True for a in shadow)


def test_arrival_order_does_not_change_the_alerts() -> None:
    """Two sources (Kafka partitions) interleaved at random: the ordered stage restores event time."""
    s = Stream(seed=11)
    s.organic(accounts=200, posts=800, minutes=120)
    s.campaign(army(15), waves=4, every_min=25, width_min=2, start=5, target=TARGET)
    events = s.sorted_events()[:-1]
    reference = run(events + [s.sorted_events()[-1]])
    rng = random.Random(0)
    a = [e for i, e in enumerate(events) if i % 2 == 0]
    b = [e for i, e in enumerate(events) if i % 2 == 1]
    engine = Engine(water_army_detectors(), sources=["a", "b"], lateness=0, state_factory=lambda _n: TableLike())
    got = []
    while a or b:
        source, queue = rng.choice([x for x in (("a", a), ("b", b)) if x[1]])
        got.extend(x.model_dump() for x in engine.process(decode(orjson.dumps(queue.pop(0)), "t"), source=source))
    end = decode(orjson.dumps(s.sorted_events()[-1]), "t")
    got.extend(x.model_dump() for x in engine.process(end, source="a") + engine.process(end, source="b"))
    assert got == reference and reference


def test_state_is_bounded_by_the_horizon_not_the_stream_length() -> None:
    """Records live at most four half-lives: with a 2-hour half-life, 4 days leave what 1 day leaves."""
    settings = WaterArmySettings(half_life_s=7200)

    def state_after(days: int) -> int:
        s = Stream(seed=12)
        for day in range(days):
            s.organic(accounts=300, posts=1500, minutes=600, start=day * 1440, prefix=f"d{day}u")
            s.campaign(army(10, f"d{day}a"), waves=4, every_min=20, width_min=2, start=day * 1440, target=TARGET)
        engine = Engine(water_army_detectors(settings))
        events = s.sorted_events()[:-1]
        run(events + [{"type": "tick", "ts": events[-1]["ts"]}], engine=engine)
        return sum(len(stage.state) for stage in engine.stages)

    one, four = state_after(1), state_after(4)
    assert 0.7 * one < four < 1.3 * one, (one, four)


def test_a_text_is_an_object_per_lsh_band_for_its_window() -> None:
    """A text acts on ``lsh_bands`` objects, one per band of its signature, each kept for
    ``text_window_s`` after its last text; near-duplicates share some of them."""
    settings = WaterArmySettings(object_window_s=300, text_window_s=1800)
    s = Stream(seed=5)
    s.post(0, "solo", "这是一条只发了一次的普通微博内容没有人重复")
    s.post(0, "w1", "某某某是骗子大家不要相信他说的任何一句话")
    s.post(1, "w2", "某某某是骗子大家千万不要相信他说的任何一句话")
    engine = Engine(water_army_detectors(settings))

    def texts_at(minute: float) -> dict[str, list[str]]:
        run([{"type": "tick", "ts": format_ts(T0 + minute * 60)}], engine=engine)
        return {ids[1]: sorted(rec["m"]) for ids, rec in records(engine, "army_objects").of_kind("object")
                if ids[1].startswith("text:")}

    run(s.sorted_events()[:-1], engine=engine)  # without the closing tick, a day later
    live = texts_at(2)
    by_account = {a: sum(a in m for m in live.values()) for a in ("solo", "w1", "w2")}
    assert by_account == {a: settings.lsh_bands for a in by_account}
    assert any(m == ["w1", "w2"] for m in live.values())  # a band the near-duplicates share
    assert texts_at(29) == live  # within text_window_s of the last text on each band
    assert texts_at(33) == {}


def test_a_post_pairs_with_its_most_recent_co_actors_on_each_object() -> None:
    """Past ``max_partners`` co-actors on one object a post pairs with the most recent there;
    an older co-actor still pairs through another object the two share."""
    settings = WaterArmySettings(max_partners=32, max_pairing=150)
    s = Stream(seed=6)
    s.post(0.0, "x", urls=["https://a.example/1"])
    for i in range(40):
        s.post((10 + i) / 60, f"crowd{i:02d}", urls=["https://a.example/1"])
    s.post(0.9, "x", hashtags=["b"])
    s.post(1.0, "me", urls=["https://a.example/1"], hashtags=["b"])
    engine = Engine(water_army_detectors(settings))
    run(s.sorted_events()[:-1] + [{"type": "tick", "ts": format_ts(T0 + 120)}], engine=engine)
    with_me = {tuple(ids[1:]): v for ids, v in records(engine, "army_pairs").of_kind("pair")
               if ids[0] == "weibo" and "me" in ids}
    assert len(with_me) == 33  # the 32 most recent of the url's crowd, and x through the hashtag
    assert with_me[("me", "x")]["o"] == ["tag:b"]
    assert ("crowd08", "me") in with_me and ("crowd07", "me") not in with_me


def test_texts_equal_after_normalisation_pair_once_per_post() -> None:
    """Full-width forms, emoji, punctuation and @mentions fold away: the same bands, and one
    co-action per pair and post (on the first band they share), not one per band."""
    s = Stream(seed=7)
    s.post(0, "a1", "某某某是骗子，大家不要相信他说的任何一句话！")
    s.post(1, "a2", "@路人 某某某是骗子!! 大家不要相信他说的任何一句话😡")
    s.post(2, "a3", "某某某是骗子 大家不要相信他说的 任何一句话 ")
    engine = Engine(water_army_detectors())
    run(s.sorted_events()[:-1] + [{"type": "tick", "ts": format_ts(T0 + 240)}], engine=engine)
    texts = [ids[1] for ids, _rec in records(engine, "army_objects").of_kind("object")]
    assert len(texts) == WaterArmySettings().lsh_bands
    pairs = {tuple(ids[1:]): v["o"] for ids, v in records(engine, "army_pairs").of_kind("pair")}
    assert pairs == {("a1", "a2"): [texts[0]], ("a1", "a3"): [texts[0]], ("a2", "a3"): [texts[0]]}
    assert texts[0].startswith("text:0:")


def records(engine: Engine, detector: str) -> Records:
    """One water-army stage's records, read the way the detector writes them."""
    return Records(engine.by_name[detector].state, lambda *_: None)


def lockstep(accounts: int = 8, waves: int = 4, operated: tuple[int, ...] = (), **content) -> list[dict]:
    """``accounts`` accounts posting under a new hashtag each wave, in the same order every wave:
    the first strong pair (the founders) is account 0 and account 1, in the third wave."""
    events = []
    for w in range(waves):
        for i in range(accounts):
            n = len(events)
            account = {"followers": 10, "platform_operated": i in operated}
            events.append({"type": "post", "event_id": f"e{n:05d}", "platform": "weibo",
                           "ts": format_ts(T0 + w * 600 + i * 6), "post_id": f"p{n}", "account_id": f"acc{i}",
                           "kind": "original", "hashtags": [f"tag{w}"], "account": account, **content})
    return events + [{"type": "tick", "ts": format_ts(T0 + 86400)}]


def test_a_campaign_with_no_target_and_no_harmful_content_carries_no_aggravation() -> None:
    """Issue 16, item 6: a harmless promotional campaign got ``water_army`` and Criminal Law
    Art. 246. It is still found (coordination), with neither."""
    [promo] = campaigns(run(lockstep()))
    assert len(promo["evidence"]["accounts"]) == 8
    assert promo["aggravating"] == [] and promo["legal_refs"] == []
    assert promo["evidence"]["harmful_content"] is False and promo["evidence"]["targeted"] is False
    [harmful] = campaigns(run(lockstep(labels=["insult"])))
    assert harmful["aggravating"] == ["water_army"] and "Criminal Law Art. 246" in harmful["legal_refs"]
    assert harmful["evidence"]["harmful_content"] is True
    [targeted] = campaigns(run(lockstep(targets=[{"id": "victim-1"}])))
    assert targeted["aggravating"] == ["water_army"] and targeted["evidence"]["targeted"] is True


def test_provider_organized_only_when_a_platform_run_account_initiated_the_campaign() -> None:
    """Issue 16, item 6: one platform-run member taking part set ``provider_organized``; the
    Opinions say 发起、组织 (initiated, organised): a founder or the hub."""
    content = {"labels": ["insult"], "targets": [{"id": "victim-1"}]}
    [joined] = campaigns(run(lockstep(operated=(5,), **content)))
    assert "acc5" in joined["evidence"]["accounts"]
    assert joined["aggravating"] == ["water_army"] and "provider_organized_by" not in joined["evidence"]
    [founded] = campaigns(run(lockstep(operated=(0,), **content)))
    assert founded["aggravating"] == ["water_army", "provider_organized"] and founded["severity"] == "critical"
    assert founded["evidence"]["provider_organized_by"] == ["acc0"]
    [promo] = campaigns(run(lockstep(operated=(0,))))  # a platform's own promotion: no online violence
    assert promo["aggravating"] == []


def test_hostile_ids_and_any_partition_count_give_the_same_campaigns() -> None:
    """The four stages re-key every post by account, object and pair: with ids holding tabs,
    NULs and backslashes (accounts, hashtags, targets), 3 or 8 partitions give exactly the
    alerts of one engine, and the campaign names the hostile accounts as they were sent."""
    from streams.local import LocalPipeline
    from streams.partitioned import PartitionedPipeline
    from streams.settings import Settings

    s = Stream(seed=9)
    s.organic(accounts=150, posts=900, minutes=200, prefix="u\t")
    members = [f"army\t{i}\x00\\" for i in range(12)]
    s.campaign(members, waves=5, every_min=30, width_min=3, start=10, target={"id": "v\t1\x00", "name": "林某"},
               hashtag="tag\t\\x")
    lines = [orjson.dumps(e) for e in s.sorted_events()]

    def alerts(make) -> list[bytes]:
        got: list[bytes] = []
        pipeline = make(lambda a: got.append(a.to_json()), lambda d: pytest.fail(f"dead letter {d}"))
        for n, line in enumerate(lines, 1):
            pipeline.feed(line, f"t:{n}")
        if hasattr(pipeline, "finish"):
            pipeline.finish()
        return got

    one = alerts(lambda a, d: LocalPipeline(Settings(detectors="water_army"), a, d))
    found = campaigns([orjson.loads(x) for x in one])
    assert found and set(found[0]["evidence"]["accounts"]) <= set(members)
    assert len(found[0]["evidence"]["accounts"]) >= 0.8 * len(members)
    for n in (3, 8):
        many = alerts(lambda a, d: PartitionedPipeline(Settings(detectors="water_army"), n, a, d))
        assert sorted(many) == sorted(one)


def test_the_stages_hand_on_events_no_input_can_carry() -> None:
    """``army_act``, ``co_action``, ``strong_pair`` and ``strong_pairs`` are read from stage
    topics only: on an input topic they are dead letters, so no platform can forge a strong pair."""
    from events import DeadLetter

    forged = {"type": "strong_pair", "event_id": "x", "platform": "weibo", "ts": format_ts(T0),
              "accounts": ["a", "b"], "objects": [], "posts": [],
              "cards": {"a": {"n": 1, "t": T0}, "b": {"n": 1, "t": T0}}}
    assert isinstance(decode(orjson.dumps(forged), "input"), DeadLetter)
    assert decode(orjson.dumps(forged), "stage", stage=True).type == "strong_pair"
    batch = {"type": "strong_pairs", "event_id": "y", "platform": "weibo", "ts": format_ts(T0), "pairs": [forged]}
    assert isinstance(decode(orjson.dumps(batch), "input"), DeadLetter)
    assert decode(orjson.dumps(batch), "stage", stage=True).pairs[0].accounts == ["a", "b"]
    too_many = decode(orjson.dumps({**batch, "pairs": [forged] * 1001}), "stage", stage=True)
    assert isinstance(too_many, DeadLetter) and "pairs" in too_many.error


class Counting:
    """A water-army stage that counts the events it is handed (``seen``) and the strong pairs in them."""

    def __init__(self, detector) -> None:  # noqa: ANN001
        self.detector, self.seen, self.pairs, self.largest = detector, 0, 0, 0

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.detector, name)

    def on_event(self, event, key, ctx):  # noqa: ANN001, ANN201
        self.seen += 1
        self.pairs += len(getattr(event, "pairs", [event]))
        self.largest = max(self.largest, len(getattr(event, "pairs", [event])))
        return self.detector.on_event(event, key, ctx)


def _growing_campaigns() -> list[dict]:
    """Two planted campaigns that grow for hours (re-reported as they grow), among organic posts."""
    s = Stream(seed=21)
    s.organic(accounts=300, posts=2500, minutes=300)
    s.campaign(army(40), waves=8, every_min=25, width_min=4, start=10, target=TARGET)
    s.campaign(army(25, "troll"), waves=6, every_min=35, width_min=2, start=40, target={"id": "victim-2"})
    return s.sorted_events()


@pytest.mark.parametrize("every, per_batch", [(60, 64), (17, 3), (600, 1000)])
def test_strong_pairs_in_batches_give_the_alerts_of_each_pair_taken_at_once(every: float, per_batch: int) -> None:
    """Issue 15: the campaigns (one stage partition per platform) take a batch of strong pairs
    per interval instead of an event per pair; joined in order, with each growth report falling
    between them at its own time, the alerts (ids, versions, times, members, evidence) are
    exactly those of taking each pair as it came (``assemble_every_s`` 0), through JSON state."""
    events = _growing_campaigns()

    def alerts(settings: WaterArmySettings) -> tuple[list[bytes], Counting]:
        stages = water_army_detectors(settings)
        stages[-1] = Counting(stages[-1])
        engine = Engine(stages, state_factory=lambda _name: TableLike())
        return sorted(orjson.dumps(a) for a in run(events, engine=engine)), stages[-1]

    at_once, single = alerts(WaterArmySettings(assemble_every_s=0))
    batched, batches = alerts(WaterArmySettings(assemble_every_s=every, pairs_per_batch=per_batch))
    found = campaigns([orjson.loads(a) for a in at_once])
    assert len(found) == 2 and max(a["version"] for a in found) > 2  # growth reports are among them
    assert batched == at_once
    assert batches.pairs == single.pairs > 50
    assert batches.largest <= per_batch and (batches.seen < single.pairs / 3 or per_batch <= 3)


def test_a_batch_of_strong_pairs_stays_far_below_a_kafka_message() -> None:
    """Pairs whose objects have the longest names fill a batch by bytes before its count: each
    batch is one stage record entry, and Kafka refuses messages over about 1 MB."""
    from datetime import datetime, timezone

    from detectors.water_army import BATCH_BYTES, ArmyPairs
    from events import StrongPair
    from streams.engine import _Context, _Partition

    ctx = _Context({}, {}, _Partition([], {}), 3, lane="weibo")
    stage = ArmyPairs(WaterArmySettings(pairs_per_batch=1000))
    card = {"n": 1.0, "t": T0, "sig": [True, True, "d" * 256, "i" * 256], "flags": ["minor_target"]}
    for i in range(300):
        stage._hold(StrongPair(type="strong_pair", event_id=f"e{i}", platform="weibo",
                               ts=datetime.fromtimestamp(T0 + i / 10, timezone.utc),
                               accounts=[f"a{i}", f"b{i}"], objects=[f"url:{j}" + "x" * 295 for j in range(32)],
                               posts=[f"p{j}" * 50 for j in range(21)], cards={f"a{i}": card, f"b{i}": card}), ctx)
    sent = [event for name, event in ctx.outbox if name == "water_army"]
    assert len(sent) > 1 and sum(len(batch.pairs) for batch in sent) < 300  # the rest waits for the minute's end
    assert all(len(batch.model_dump_json()) < BATCH_BYTES + 20_000 for batch in sent)
    assert len({batch.event_id for batch in sent}) == len(sent)  # one seen-set entry each
    assert all(batch.event_id.endswith("/" + batch.pairs[0].event_id) for batch in sent)  # named by its first pair


@pytest.mark.parametrize("late", [False, True])
def test_pairs_at_one_time_and_pairs_after_their_interval_left_still_join(late: bool) -> None:
    """Found by the session-23 review: a batch's id was its interval, partition and a count that
    restarted once the interval's batch had left, so a later batch of that interval (posts of
    one second on a second-granularity clock; a post later than the lateness) took the same id
    and was dropped as a copy: the campaign lost members. Now each batch is named by its first
    pair, and the alerts are those of single pairs."""
    events = lockstep(accounts=8, waves=3 if late else 4)
    for event in events[:-1]:
        n = int(event["post_id"][1:])
        if not late:  # every post of a wave at the wave's one second
            event["ts"] = format_ts(T0 + (n // 8) * 600)
    if late:  # the last wave's last post (+42 s) comes after a tick 50 s past it, beyond the lateness
        events.insert(-2, {"type": "tick", "ts": format_ts(T0 + 2 * 600 + 42 + 50)})
    found = {}
    for every in (0, 60):
        engine = Engine(water_army_detectors(WaterArmySettings(assemble_every_s=every)), lateness=30 if late else 0)
        alerts = run(events, engine=engine)
        assert engine.drain_failures() == []
        found[every] = sorted(orjson.dumps(a) for a in alerts)
        [campaign] = campaigns(alerts)
        assert len(campaign["evidence"]["accounts"]) == 8
    assert found[60] == found[0]


def test_a_growth_report_kept_from_before_batches_waits_for_its_intervals_pairs() -> None:
    """A growth report's timer from before batches (keyed by platform and campaign) fires at its
    time, but its interval's earlier pairs are joined only at the interval's end: so it joins
    that interval's agenda (found by the session-23 review: it reported the campaign without
    them, a version too many). At an interval's very end it reports at once."""
    from detectors.water_army import interval_end
    from events import keys
    from streams.engine import _Context, _Partition

    engine = Engine(water_army_detectors(WaterArmySettings(assemble_every_s=0)))
    [before] = campaigns(run(lockstep(accounts=8, waves=4)[:-1], engine=engine))
    state = engine.by_name["water_army"].state
    [(cid, camp)] = {ids[1]: rec for ids, rec in records(engine, "water_army").of_kind("campaign")}.items()
    camp["members"]["late-joiner"] = camp["t"]
    for next_at, reported in ((T0 + 1234.5, False), (T0 + 1260.0, True)):
        camp["next"] = next_at
        timers: dict = {}
        ctx = _Context(state, timers, _Partition([], {}), 0, lane="weibo")
        alerts = WaterArmy().on_timer(keys.key("weibo", cid), ctx)
        assert bool(alerts) is reported
        if reported:  # a version more, with the member it found
            assert alerts[0].alert_id == before["alert_id"] and alerts[0].version == before["version"] + 1
            assert "late-joiner" in alerts[0].evidence["accounts"]
        else:
            end = interval_end(next_at, 60)
            assert end == T0 + 1260.0 and list(timers.values()) == [[end, 0, "weibo"]]
            assert Records(state, lambda *_: None).get("agenda", "weibo")["due"] == {cid: next_at}


def test_an_intervals_end_is_one_float_whatever_the_setting() -> None:
    """The interval's end names records and timers: a pair's batch, its receiver and a report due
    in the interval must all write it alike (an integer 60 once made a second timer key)."""
    from detectors.water_army import _stamp, interval_end

    for t in (T0 + 0.000001, T0 + 59.999999, T0 + 60, 1.0 / 3):
        for every in (60, 60.0, 7, 0.1, 0):
            end = interval_end(t, every)
            assert isinstance(end, float) and end >= t and float(_stamp(end)) == end
