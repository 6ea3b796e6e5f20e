"""The engine core: watermark over sources, timers, key routing, write-back state."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, MutableMapping

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.orders import ledger_detectors
from events import decode
from events.records import record_key
from streams.engine import Engine
from events.watermark import Watermark
from tests.support.events import action, feed, order, post, tick


class TableLike(MutableMapping):
    """Behaves like a Faust table: values go through JSON, nested edits are not seen unless written back."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def __getitem__(self, key: str):
        return orjson.loads(self.data[key])

    def __setitem__(self, key: str, value) -> None:
        self.data[key] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)


def run(events: list[dict], engine: Engine | None = None, sources: list[str] | None = None) -> list[dict]:
    return feed(engine or Engine(ledger_detectors()), events, sources)


def test_watermark_is_the_slowest_source_less_lateness() -> None:
    wm = Watermark(["a", "b"], lateness=10)
    assert not wm.observe("a", 100)
    assert wm.value == -math.inf  # b has said nothing yet
    assert wm.observe("b", 50)
    assert wm.value == 40
    assert not wm.observe("b", 45)  # a late event does not move time back
    assert wm.observe("b", 200) and wm.value == 90


def test_timer_fires_once_when_time_passes_the_deadline() -> None:
    events = [order("o1", 0, 60), tick(59), tick(61), tick(120)]
    alerts = run(events)
    assert [a["kind"] for a in alerts] == ["order_overdue"]
    assert alerts[0]["ts"] == "2026-11-30T01:00:00Z"  # the deadline, not the tick that revealed it


def test_lateness_delays_the_decision_not_its_time() -> None:
    events = [order("o1", 0, 60), tick(60.2), action("a1", "o1", 59.9, "completed"), tick(70)]
    assert run(events, Engine(ledger_detectors(), lateness=30)) == []  # late but on-time completion counted
    assert [a["kind"] for a in run(events, Engine(ledger_detectors(), lateness=0))] == ["order_overdue"]


def test_state_written_back_works_with_table_semantics() -> None:
    events = [order("o1", 0, 30, measures=["remove_content", "report_back"]),
              action("a1", "o1", 5, "content_removed"), tick(40)]
    as_dict = run(events)
    as_table = run(events, Engine(ledger_detectors(), state_factory=lambda _n: TableLike()))
    assert as_dict == as_table
    assert as_table[0]["evidence"]["missing_measures"] == ["report_back"]


def test_timers_survive_a_restart_of_the_engine() -> None:
    tables: dict[str, TableLike] = {}

    def factory(name: str) -> TableLike:
        return tables.setdefault(name, TableLike())

    first = Engine(ledger_detectors(), state_factory=factory)
    run([order("o1", 0, 30), tick(10)], first)
    second = Engine(ledger_detectors(), state_factory=factory)  # same tables, fresh memory
    assert [a["kind"] for a in run([tick(45)], second)] == ["order_overdue"]


# Per-source sequences, each in event-time order, as Kafka partitions deliver them.
SOURCES = {
    "orders/0": [order("o1", 0, 30, measures=["remove_content", "preserve_evidence"]), order("o2", 1, 20),
                 order("o3", 2, 40), tick(25), tick(60)],
    "platform-actions/0": [action("a1", "o1", 5, "content_removed"), action("a2", "o2", 10, "completed"),
                           action("a3", "o3", 15, "refused"), action("a4", "o1", 35, "completed"),
                           tick(25), tick(60)],
}


@settings(max_examples=150, deadline=None)
@given(st.permutations([s for s, evs in SOURCES.items() for _ in evs]))
def test_any_interleaving_of_sources_gives_the_same_alerts(order_of_sources: list[str]) -> None:
    queues = {s: list(evs) for s, evs in SOURCES.items()}
    events, sources = [], []
    for s in order_of_sources:
        events.append(queues[s].pop(0))
        sources.append(s)
    engine = Engine(ledger_detectors(), sources=list(SOURCES))
    alerts = run(copy.deepcopy(events), engine, sources)
    got = sorted((a["alert_id"], a["version"], a["ts"], orjson.dumps(a["evidence"], option=orjson.OPT_SORT_KEYS))
                 for a in alerts)
    reference = run([e for s in SOURCES for e in SOURCES[s]], Engine(ledger_detectors(), sources=list(SOURCES)),
                    [s for s in SOURCES for _ in SOURCES[s]])
    want = sorted((a["alert_id"], a["version"], a["ts"], orjson.dumps(a["evidence"], option=orjson.OPT_SORT_KEYS))
                  for a in reference)
    assert got == want
    # o1 asks for preserve_evidence and its content is removed before any evidence_preserved
    assert {a["kind"] for a in alerts} == {"order_overdue", "order_refused", "evidence_not_preserved"}


def test_key_restricts_routing_to_detectors_with_that_key() -> None:
    """On Kafka a stage message carries one key; detectors sharing the stage take it only if
    the event has that key for them."""
    engine = Engine(ledger_detectors())
    engine.process(decode(orjson.dumps(order("o1", 0, 30)), "t"), key="elsewhere")
    engine.process(decode(orjson.dumps(order("o2", 0, 30)), "t"), key="weibo")
    engine.process(decode(orjson.dumps(tick(1)), "t"))  # the ledger is ordered: time must pass the order
    state = engine.by_name["orders"].state
    assert record_key("order", "weibo", "o2") in state
    assert not any("o1" in key for key in state)


def test_a_rebalance_keeps_buffered_events_and_time() -> None:
    """reset() (a Kafka rebalance) rebuilds indexes from state but loses no buffered event."""
    engine = Engine(ledger_detectors(), sources=["a", "b"], state_factory=lambda _n: TableLike())
    engine.process(decode(orjson.dumps(order("o1", 0, 30)), "t"), source="a")  # buffered: b is behind
    engine.process(decode(orjson.dumps(tick(10)), "t"), source="a")
    engine.reset()
    alerts = engine.process(decode(orjson.dumps(tick(40)), "t"), source="b")
    alerts += engine.process(decode(orjson.dumps(tick(40)), "t"), source="a")
    assert [a.kind for a in alerts] == ["order_overdue"]


def test_buffered_events_survive_a_restart_when_buffers_are_durable() -> None:
    """A worker stops while an ordered stage still buffers an event whose offset Kafka committed."""
    tables: dict[str, TableLike] = {}

    def factory(name: str) -> TableLike:
        return tables.setdefault(name, TableLike())

    first = Engine(ledger_detectors(), sources=["a", "b"], state_factory=factory, durable_buffers=True)
    first.process(decode(orjson.dumps(order("o1", 0, 30)), "t"), source="a")  # buffered: b is behind
    second = Engine(ledger_detectors(), sources=["a", "b"], state_factory=factory, durable_buffers=True)  # restart
    alerts = second.process(decode(orjson.dumps(tick(40)), "t"), source="a")
    alerts += second.process(decode(orjson.dumps(tick(40)), "t"), source="b")
    assert [a.kind for a in alerts] == ["order_overdue"]
    assert not [k for k in tables["orders"].data if k.startswith("~buffered")]  # released, so forgotten


def posts_stage() -> list:
    """The ``posts`` stage with cascades keyed by root: three ordered detectors sharing one key
    (order watch, cascade watch, post targets), which hand events on rather than raise."""
    from detectors.cascades import CascadeSettings
    from streams.registry import build_detectors, stages
    from streams.settings import Settings

    return stages(build_detectors(Settings(cascades=CascadeSettings(root_ids_given=["weibo"]))))["posts"]


def outputs(engine: Engine, event, **how) -> list[bytes]:
    """What one call gives: its alerts, then the events handed on to other stages."""
    alerts = [a.to_json() for a in engine.process(event, **how)]
    return alerts + [orjson.dumps([name, e.model_dump(mode="json")]) for name, e in engine.drain_emitted()]


def test_an_event_several_ordered_detectors_wait_for_is_kept_once_and_survives_restarts() -> None:
    """A stage's ordered detectors buffer a post once between them (one record, naming who
    still holds it): the same output as with no restart, however often it restarts."""
    from commands.simulator import SimConfig, simulate_lines

    platform_stage = posts_stage
    first, holders = platform_stage()[0].name, len(platform_stage())
    assert holders >= 2
    events = [decode(line, "t") for line in simulate_lines(SimConfig(seed=3, minutes=8, organic_per_s=2))]
    sources = ["a", "b"]
    reference = Engine(platform_stage(), sources=sources)
    expected = [out for i, e in enumerate(events) for out in outputs(reference, e, source=sources[i % 2])]

    tables: dict[str, TableLike] = {}
    factory = lambda name: tables.setdefault(name, TableLike())  # noqa: E731
    got: list[bytes] = []
    engine = None
    shared_seen, restored = False, 0
    for i, event in enumerate(events):
        if i % 700 == 0:  # a restart: a new engine over the same tables
            engine = Engine(platform_stage(), sources=sources, state_factory=factory, durable_buffers=True)
            engine.open(0)
            restored += engine.buffered(0)[1]
        got += outputs(engine, event, source=sources[i % 2])
        held = {name: [k for k in table.data if k.startswith("~buffered")] for name, table in tables.items()}
        assert not any(held[name] for name in held if name != first), "buffered events live in one table"
        shared_seen |= any(len(tables[first][k][2]) == holders for k in held.get(first, ()))
    for source in sources:
        got += outputs(engine, decode(orjson.dumps(tick(10_000)), "t"), source=source)
        expected += outputs(reference, decode(orjson.dumps(tick(10_000)), "t"), source=source)
    assert expected and got == expected
    assert shared_seen, "a post waited for by all the stage's detectors is one record naming them"
    assert restored, "some restart found buffered events to read back"
    assert not [k for t in tables.values() for k in t.data if k.startswith("~buffered")]


def test_a_post_and_a_report_with_the_same_id_and_time_are_buffered_apart() -> None:
    """Ids are the platform's: a post and a report may share one (hostile or careless). Buffered
    by the same stage at the same time, each keeps its own durable record."""
    from streams.registry import build_detectors, stages
    from streams.settings import Settings

    tables: dict[str, TableLike] = {}
    factory = lambda name: tables.setdefault(name, TableLike())  # noqa: E731
    shared = post("p1", 1, event_id="same")
    report = {"type": "report", "event_id": "same", "platform": "weibo", "ts": shared["ts"], "report_id": "r1",
              "reporter_id": "u9", "post_id": "p1", "category": "defamation"}

    def platform_engine() -> Engine:
        return Engine(posts_stage(), sources=["a", "b"], state_factory=factory, durable_buffers=True)

    first = platform_engine()
    for event in (shared, report):  # source b is behind: both wait
        first.process(decode(orjson.dumps(event), "t"), source="a")
    held = first.buffered(0)[0]
    assert held >= 3  # the post for two detectors at least (order watch, cascade watch), the report for one
    second = platform_engine()  # a restart
    second.open(0)
    assert second.buffered(0) == (held, held)  # both read back, for every detector holding them
    second.process(decode(orjson.dumps(tick(10)), "t"), source="a")
    second.process(decode(orjson.dumps(tick(10)), "t"), source="b")
    assert second.buffered(0)[0] == 0
    assert not [k for t in tables.values() for k in t.data if k.startswith("~buffered")]


def test_replayed_buffers_survive_restarts_by_reading_again_from_the_oldest_buffered_offset() -> None:
    """Replayed buffers (the Kafka worker): nothing is written for a buffered event; the stage
    commits no further than ``oldest_offset``, and a restarted engine reads on from there. The
    events released before are dropped as seen, the rest buffered again: the same alerts as
    with no restart, however often it restarts, and no buffer record in any table."""
    from commands.simulator import SimConfig, simulate_lines

    platform_stage = posts_stage
    events = [decode(line, "t") for line in simulate_lines(SimConfig(seed=5, minutes=8, organic_per_s=2))]
    events.append(decode(orjson.dumps(tick(10_000)), "t"))
    sources = ["a", "b"]
    reference = Engine(platform_stage(), sources=sources)
    expected = [out for i, e in enumerate(events) for out in outputs(reference, e, source=sources[i % 2])]
    expected += outputs(reference, events[-1], source="a")

    tables: dict[str, TableLike] = {}
    factory = lambda name: tables.setdefault(name, TableLike())  # noqa: E731
    got: list[bytes] = []
    engine = Engine(platform_stage(), sources=sources, state_factory=factory, replayed_buffers=True)
    i, steps, restarts, reread = 0, 0, 0, 0
    while i < len(events):
        got += outputs(engine, events[i], source=sources[i % 2], offset=i)
        engine.settle()  # these tables store every change at once: nothing released is at risk
        i += 1
        steps += 1
        if steps % 400 == 0 and i < len(events) - 1:  # a restart: Kafka's commit stood at the oldest held offset
            oldest = engine.oldest_offset(0)
            restarts += 1
            reread += i - oldest if oldest is not None else 0
            i = oldest if oldest is not None else i
            engine = Engine(platform_stage(), sources=sources, state_factory=factory, replayed_buffers=True)
    got += outputs(engine, events[-1], source="a")
    assert expected and sorted(got) == sorted(expected)
    assert restarts >= 3 and reread > 0, "some restart read events again"
    assert engine.oldest_offset(0) is None and engine.buffered(0)[0] == 0
    assert not [k for t in tables.values() for k in t.data if k.startswith("~buffered")]


def test_a_duplicate_that_comes_while_the_event_is_held_is_dropped() -> None:
    from detectors.orders import OrderLedger

    engine = Engine([OrderLedger()], sources=["a", "b"], replayed_buffers=True)
    first = decode(orjson.dumps(order("o1", 0, 30)), "t")
    engine.process(first, source="a", offset=7)  # held: b is behind
    engine.process(first, source="a", offset=9)  # the same event again
    assert engine.oldest_offset(0) == 7 and engine.buffered(0)[0] == 1
    alerts = engine.process(decode(orjson.dumps(tick(40)), "t"), source="a")
    alerts += engine.process(decode(orjson.dumps(tick(40)), "t"), source="b")
    assert [a.kind for a in alerts] == ["order_overdue"]
    assert engine.oldest_offset(0) == 7  # released, but until its state is stored a restart reads it again
    engine.settle()
    assert engine.oldest_offset(0) is None
    engine.process(first, source="a", offset=11)  # and after its release: seen
    assert engine.buffered(0)[0] == 0


def test_a_watermark_that_jumps_gives_the_state_of_small_steps() -> None:
    """A source that stays silent (no ticks) holds a partition's watermark back, then one step
    releases everything: records must expire by the time of each event handed over, as they
    do when the watermark moves event by event (found on coord_synth, whose only topic is
    posts: ``replay --partitions`` gave other campaigns than ``replay``)."""

    class Probe:
        name, raises, event_types, ordered = "probe", (), frozenset({"post"}), True

        def __init__(self) -> None:
            self.found: list[tuple[str, bool]] = []

        def keys(self, event):  # noqa: ANN001, ANN201
            return [event.platform]

        def on_event(self, event, key, ctx):  # noqa: ANN001, ANN201
            self.found.append((event.post_id, ctx.records.get("last", key) is not None))
            ctx.records.save("last", key, record={}, until=event.epoch + 60)
            return []

        def on_timer(self, key, ctx):  # noqa: ANN001, ANN201
            return []

    events = [decode(orjson.dumps(e), "t") for e in (post("p1", 0), post("p2", 0.5), post("p3", 5), tick(10))]
    steps, jump = Probe(), Probe()
    one = Engine([steps], sources=["a"])
    for event in events:
        one.process(event, source="a")
    two = Engine([jump], sources=["a", "silent"])
    for event in events:
        two.process(event, source="a")
    two.process(events[-1], source="silent")  # everything is released in one step
    assert steps.found == [("p1", False), ("p2", True), ("p3", False)]  # p1's record expired after a minute
    assert jump.found == steps.found


def test_an_event_emitted_twice_is_taken_once_per_key_and_never_passes_for_an_input() -> None:
    """In one engine an emitted event goes to every key of its receiver in one call: emitted
    again (here by both keys of the emitter), it is dropped, as the receiving stages' seen-sets
    drop it on Kafka. Its seen mark cannot hide an input that shares its platform and id."""
    from typing import ClassVar

    class Emitter:
        name: ClassVar[str] = "emitter"
        raises: ClassVar[tuple[str, ...]] = ()
        event_types: ClassVar[frozenset[str]] = frozenset({"post"})
        ordered: ClassVar[bool] = True
        emits: ClassVar[frozenset[str]] = frozenset({"receiver"})

        def keys(self, event):  # noqa: ANN001, ANN201
            return ["k1", "k2"] if event.event_id == "e1" else []

        def on_event(self, event, key, ctx):  # noqa: ANN001, ANN201
            ctx.emit("receiver", event)  # the same event from both keys
            return []

        def on_timer(self, key, ctx):  # noqa: ANN001, ANN201
            return []

    class Receiver:
        name: ClassVar[str] = "receiver"
        raises: ClassVar[tuple[str, ...]] = ()
        event_types: ClassVar[frozenset[str]] = frozenset({"order"})
        receives: ClassVar[frozenset[str]] = frozenset({"post"})
        ordered: ClassVar[bool] = True
        taken: ClassVar[list] = []

        def keys(self, event):  # noqa: ANN001, ANN201
            return ["a", "b", "a", "c"] if event.type == "post" else ["a"]  # a key listed twice: taken once

        def on_event(self, event, key, ctx):  # noqa: ANN001, ANN201
            self.taken.append((event.type, event.event_id, key))
            return []

        def on_timer(self, key, ctx):  # noqa: ANN001, ANN201
            return []

    engine = Engine([Emitter(), Receiver()])
    engine.process(decode(orjson.dumps({**post("p1", 0), "event_id": "e1"}), "t"))
    engine.process(decode(orjson.dumps({**order("o1", 0, 30), "event_id": "e1"}), "t"))  # same platform, id, time
    engine.process(decode(orjson.dumps(tick(1)), "t"))
    assert sorted(Receiver.taken) == [("order", "e1", "a"), ("post", "e1", "a"), ("post", "e1", "b"),
                                      ("post", "e1", "c")]


def test_the_marks_of_emitted_events_last_the_duplicate_window_and_no_longer() -> None:
    """An emitted event's mark (in memory: nothing outlives one process there) drops a repeat
    within the duplicate window; older marks go, so their memory does not grow with the stream."""
    from streams.engine import _Partition

    part, window = _Partition([], {}), 600.0
    first = decode(orjson.dumps(post("p0", 0)), "t")
    assert part.first_emission(first, window) and not part.first_emission(first, window)
    for minute in range(1, 120):  # two hours, one emitted event a minute
        assert part.first_emission(decode(orjson.dumps(post(f"p{minute}", minute)), "t"), window)
    assert len(part.emitted) <= window / 60 + 2  # a second's marks each minute, the last ten minutes'
    assert part.first_emission(first, window)  # two hours on, a repeat is no longer told apart
