"""At-least-once delivery: an event that comes twice, at once or later, changes no alert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.orders import ledger_detectors
from events import decode
from streams.engine import SEEN, Engine
from streams.local import LocalPipeline
from streams.settings import Settings
from commands.simulator import SimConfig, redeliver, simulate_lines
from tests.support.events import at, order, tick
from tests.test_engine import TableLike


def replay_in_process(lines: list[bytes], **overrides) -> tuple[list[bytes], list[dict]]:
    alerts, letters = [], []
    pipeline = LocalPipeline(Settings(**overrides), lambda a: alerts.append(a.to_json()),
                             lambda d: letters.append(d.to_record()))
    for n, line in enumerate(lines, 1):
        pipeline.feed(line, f"t:{n}")
    return alerts, letters


def test_replay_with_ten_percent_duplicates_is_byte_identical(stormwatch_bin: str, tmp_path: Path) -> None:
    """The issue's scenario: every detector, a 40-minute stream, 10% of the events twice."""
    clean = list(simulate_lines(SimConfig(minutes=40)))
    doubled = redeliver(clean, share=0.1, seed=3)
    assert len(doubled) - len(clean) > 0.09 * len(clean)
    outputs = []
    for name, lines in (("clean", clean), ("doubled", doubled)):
        src, out, dead = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.alerts", tmp_path / f"{name}.dead"
        src.write_bytes(b"\n".join(lines) + b"\n")
        done = subprocess.run([stormwatch_bin, "replay", str(src), "--alerts-out", str(out),
                               "--deadletter-out", str(dead)], capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert dead.read_bytes() == b""
        outputs.append(out.read_bytes())
    kinds = {orjson.loads(line)["kind"] for line in outputs[0].splitlines()}
    assert {"water_army_campaign", "legal_threshold", "viral_spread", "violence_surge", "order_overdue",
            "order_refused"} <= kinds
    assert outputs[0] == outputs[1]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), share=st.floats(0.05, 0.5), order_seed=st.integers(0, 100))
def test_any_redelivery_changes_no_alert(seed: int, share: float, order_seed: int) -> None:
    lines = list(simulate_lines(SimConfig(seed=seed, minutes=12, organic_per_s=2, army_accounts=15,
                                          viral_reposts=600)))
    clean, _ = replay_in_process(lines)
    doubled, letters = replay_in_process(redeliver(lines, share=share, seed=order_seed))
    assert clean  # the scenario always alerts (orders overdue and refused at least)
    assert doubled == clean
    assert letters == []


def test_duplicates_through_a_table_like_store_are_dropped_after_a_json_round_trip() -> None:
    """On Kafka the seen records go through JSON (a Faust table); they must still match."""
    events = [order("o1", 0, 10), order("o1", 0, 10), tick(20)]
    events[1]["event_id"] = events[0]["event_id"]
    tables: dict[str, TableLike] = {}
    engine = Engine(ledger_detectors(), state_factory=lambda name: tables.setdefault(name, TableLike()),
                    durable_buffers=True)
    alerts = [a for raw in events for a in engine.process(decode(orjson.dumps(raw), "t"))]
    assert [a.kind for a in alerts] == ["order_overdue"]
    seen = [key for key in tables["order_watch"].data if key.startswith(SEEN)]  # the first taker of orders
    assert seen, "the seen-set lives in its first taker's own table"


def test_the_same_event_id_on_another_platform_is_not_a_duplicate() -> None:
    first = order("o1", 0, 10, platform="weibo")
    second = order("o1", 0, 10, platform="douyin")
    second["event_id"] = first["event_id"]
    alerts, letters = replay_in_process([orjson.dumps(e) for e in (first, second, tick(20))])
    assert sorted(orjson.loads(a)["platform"] for a in alerts) == ["douyin", "weibo"]
    assert letters == []


def test_an_event_older_than_the_duplicate_window_is_dead_lettered_as_late() -> None:
    early = order("o-late", 0, 10)
    alerts, letters = replay_in_process([orjson.dumps(e) for e in (tick(0), tick(120), early, tick(240))],
                                        dedupe_window_s=3600)
    assert [orjson.loads(a)["kind"] for a in alerts] == []  # 2 hours behind a 1-hour window: not taken
    assert [(d["reason"], d["error"].split(":")[0]) for d in letters] == [("late", "ts")]
    assert orjson.loads(letters[0]["raw"])["order_id"] == "o-late"
    # within the window the same late event is still taken (out of order, once)
    alerts, letters = replay_in_process([orjson.dumps(e) for e in (tick(0), tick(30), early, early, tick(240))],
                                        dedupe_window_s=3600)
    assert [orjson.loads(a)["kind"] for a in alerts] == ["order_overdue"]
    assert letters == []


def test_seen_records_expire_so_state_stays_bounded() -> None:
    engine = LocalPipeline(Settings(dedupe_window_s=60), lambda a: None, lambda d: None).engine
    for minute in range(0, 600, 1):
        engine.process(decode(orjson.dumps(order(f"o{minute}", minute, minute + 1)), "t"))
    live = [key for key in engine.by_name["order_watch"].state if key.startswith(SEEN)]
    assert 0 < len(live) <= 3  # a 60 s window over one order a minute: the last few seconds' records


def restamped(lines: list[bytes], share: float, seed: int, shift: tuple[float, float]) -> list[bytes]:
    """``lines`` with a copy of ``share`` of the events (not ticks) sent again right after the
    original, its ``ts`` moved by a random ``shift`` in seconds (a platform resending with a
    new stamp; the contract: same platform and ``event_id``, other content, still a duplicate)."""
    import random
    from datetime import datetime, timedelta

    rng, out = random.Random(seed), []
    for line in lines:
        out.append(line)
        event = orjson.loads(line)
        if event["type"] != "tick" and rng.random() < share:
            ts = datetime.fromisoformat(event["ts"]) + timedelta(seconds=rng.uniform(*shift))
            out.append(orjson.dumps({**event, "ts": ts.isoformat()}))
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), shift=st.sampled_from([(1, 30), (60, 600), (-600, -1)]))
def test_a_copy_with_another_ts_changes_nothing(seed: int, shift: tuple[float, float]) -> None:
    """A copy stamped seconds or minutes off its original is still a duplicate: no alert
    changes, and (stamped later) it does not move event time either (a deadline would fire
    before events that are still to come). Seen records are bucketed by second, so a copy
    in another second was once counted again (a 500th repost from 499)."""
    lines = list(simulate_lines(SimConfig(seed=seed, minutes=12, organic_per_s=2, army_accounts=15,
                                          viral_reposts=600)))
    clean, _ = replay_in_process(lines)
    copies, letters = replay_in_process(restamped(lines, share=0.15, seed=seed, shift=shift))
    assert clean
    assert copies == clean
    assert letters == []


def _replay_events(events: list[dict], partitions: int | None) -> tuple[list[bytes], list[dict]]:
    from streams.partitioned import PartitionedPipeline
    alerts, letters = [], []
    sinks = (lambda a: alerts.append(a.to_json()), lambda d: letters.append(d.to_record()))
    pipeline = LocalPipeline(Settings(), *sinks) if partitions is None else PartitionedPipeline(Settings(), partitions,
                                                                                                 *sinks)
    for n, event in enumerate(events, 1):
        pipeline.feed(orjson.dumps(event), f"t:{n}")
    pipeline.finish()
    return sorted(alerts), letters


@pytest.mark.parametrize("partitions", [None, 4, 8])
def test_a_copy_of_an_event_taken_late_is_remembered_a_window_after_it_came(partitions: int | None) -> None:
    """A repost of an ordered post comes 50 minutes behind event time (inside the window, so
    taken) and is counted against the order; its copy comes 12 minutes later, stamped 59 min 50 s
    after the original. Filed under its own ts, the first copy was forgotten 10 minutes after it
    came and the copy counted again (a review's reproducer, session 20)."""
    from tests.support.events import post
    late = post("r1", 70, account="u1", kind="repost", parent_id="p1", root_id="p1")
    copy = {**late, "ts": at(129 + 50 / 60)}
    events = [order("o1", 0, 10), post("x0", 120), tick(120), late, post("x1", 132), tick(132)]
    clean, letters = _replay_events([*events, tick(140)], None)
    assert letters == []
    assert [orjson.loads(a)["kind"] for a in clean] == ["continued_dissemination", "order_overdue"]
    doubled, letters = _replay_events([*events, copy, tick(140)], partitions)
    assert letters == []
    assert doubled == clean


def test_with_replayed_buffers_an_event_is_remembered_from_when_it_came_as_in_process() -> None:
    """On Kafka (replayed buffers) an ordered stage marks an event seen when it releases it,
    later than replay marks it; filed by the event time then, a restamped copy was dropped on
    Kafka and counted in process (a review's reproducer, session 20)."""
    from tests.support.events import post

    class Counter:
        name, event_types, raises, ordered = "counter", frozenset({"post"}), (), True

        def __init__(self) -> None:
            self.taken: list[str] = []

        def keys(self, event):  # noqa: ANN001, ANN201
            return [event.post_id]

        def on_event(self, event, key, ctx):  # noqa: ANN001, ANN201
            self.taken.append(event.event_id)
            return []

        def on_timer(self, key, ctx):  # noqa: ANN001, ANN201
            return []

    first = post("p1", 0)

    def run(replayed: bool) -> list[str]:
        counter = Counter()
        engine = Engine([counter], sources=["a", "b"], lateness=300, dedupe_window=3600, replayed_buffers=replayed)
        offsets = iter(range(1000))

        def feed(raw: dict, source: str) -> None:
            engine.process(decode(orjson.dumps(raw), "t"), source=source, offset=next(offsets))

        feed(first, "a")
        for minute in [0, *range(20, 68)]:  # released at 20 min less the lateness (900 s)
            feed(tick(minute), "a")
            feed(tick(minute), "b")
        feed({**first, "ts": at(67.5)}, "a")  # a window after it came, not after it was released
        for minute in (68, 70, 80):
            feed(tick(minute), "a")
            feed(tick(minute), "b")
        engine.settle()
        return counter.taken

    in_process = run(replayed=False)
    assert in_process == [first["event_id"]] * 2  # the copy came more than a window after: new
    assert run(replayed=True) == in_process
