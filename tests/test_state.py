"""The worker's write-back table state and its stage grouping (the Kafka paths run in
test_kafka_pipeline: a restarted worker restores these tables from their changelogs)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import orjson

import pytest

from streams.registry import build_detectors, stages
from streams.settings import Settings
from streams.kafka.state import TableState


class Store(dict):
    """Stands in for a Faust table's store: records each write with the partition it was made for."""

    def __init__(self) -> None:
        super().__init__()
        self.partition = None
        self.log: list[tuple] = []
        self.persisted: dict = {}

    def __setitem__(self, key, value) -> None:
        self.log.append(("set", self.partition, key))
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.log.append(("del", self.partition, key))
        super().__delitem__(key)

    def set_persisted_offset(self, tp, offset) -> None:
        self.persisted[tp] = offset


class Table:
    """Stands in for a Faust table: its store, codecs and changelog topic."""

    name = "det"
    key_serializer = value_serializer = "json"
    changelog_topic = type("Topic", (), {"get_topic_name": staticmethod(lambda: "app-det-changelog")})()

    def __init__(self) -> None:
        self.data = Store()


class Producer:
    """Stands in for the aiokafka producer: aiokafka's own record batches, kept instead of sent
    (each batch's future resolves with offsets counted per partition, as Kafka would)."""

    def __init__(self, batch_size: int = 16384) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes | None]]]] = []

    def create_batch(self):  # noqa: ANN201
        from aiokafka.producer.message_accumulator import BatchBuilder

        return BatchBuilder(self.batch_size, 0, is_transactional=False)

    async def send_batch(self, batch, topic: str, *, partition: int):  # noqa: ANN001, ANN201
        import asyncio

        from aiokafka.record.default_records import DefaultRecordBatch
        from aiokafka.structs import RecordMetadata, TopicPartition

        records = [(r.key, r.value) for r in DefaultRecordBatch(bytes(batch._build()))]
        base = sum(len(m) for t, p, m in self.sent if (t, p) == (topic, partition))
        self.sent.append((topic, partition, records))
        future = asyncio.get_running_loop().create_future()
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, base, -1, 0, 0))
        return future


def enter(table: Table):
    def make_current(partition: int) -> None:
        table.data.partition = partition
    return make_current


def test_changes_wait_for_the_flush_and_reads_see_them() -> None:
    table = Table()
    state = TableState(table)
    state["a"] = {"n": 1}
    state["a"] = {"n": 2}
    assert state["a"] == {"n": 2} and "a" in state and table.data == {}
    assert state.flush(enter(table)) == 1
    assert table.data == {"a": {"n": 2}} and table.data.log == [("set", 0, "a")]


def test_a_key_created_and_deleted_in_one_batch_costs_nothing() -> None:
    table = Table()
    state = TableState(table)
    state["buffered"] = [1]
    del state["buffered"]
    assert "buffered" not in state and state.get("buffered") is None
    with pytest.raises(KeyError):
        del state["buffered"]
    assert state.flush(enter(table)) == 0 and table.data.log == [] and state.outgoing == {0: []}


def test_deleting_a_stored_key_reaches_the_table() -> None:
    table = Table()
    table.data.update(old=1, kept=2)
    state = TableState(table)
    assert state.pop("old") == 1
    state["new"] = 3
    assert sorted(state) == ["kept", "new"] and len(state) == 2
    state.flush(enter(table))
    assert table.data == {"kept": 2, "new": 3}


def test_each_change_is_written_for_the_partition_it_was_made_on() -> None:
    table = Table()
    state = TableState(table)
    for partition, key in [(2, "x"), (0, "y"), (2, "z")]:
        state.partition = partition
        state[key] = partition
    state.flush(enter(table))
    assert table.data.log == [("set", 0, "y"), ("set", 2, "x"), ("set", 2, "z")]


def test_the_changelog_gets_fausts_messages_in_record_batches_per_partition() -> None:
    """Faust restores a table from its changelog: the messages must be what Faust writes (the
    key and value in the table's json codec, a tombstone for a delete), each on the partition
    it was made for, in order, however many batches they take."""
    from faust.serializers import codecs

    table = Table()
    table.data.update(old=1)
    state = TableState(table)
    state.partition = 1
    del state["old"]
    state["a\t<b>"] = {"until": 5.5, "ids": ["x"]}
    state.partition = 3
    for i in range(300):
        state[f"k{i}"] = "v" * 100
    assert state.flush(enter(table)) == 302
    producer = Producer(batch_size=4096)

    async def send() -> tuple[int, list]:
        batches = await state.send_changelog(producer)
        return batches, [future.done() for future in state.sent]

    batches, done = asyncio.run(send())
    assert state.outgoing == {}
    assert [(t, p) for t, p, _ in producer.sent][:1] == [("app-det-changelog", 1)]
    assert batches == len(producer.sent) > 2  # partition 3's 300 messages took several batches
    by_partition: dict[int, list] = {}
    for _topic, partition, records in producer.sent:
        by_partition.setdefault(partition, []).extend(records)
    assert by_partition[1] == [(b'"old"', None), (codecs.dumps("json", "a\t<b>"), codecs.dumps("json", {"until": 5.5, "ids": ["x"]}))]
    assert [codecs.loads("json", k) for k, _ in by_partition[3]] == [f"k{i}" for i in range(300)]
    assert len(done) == batches and all(done)
    # each batch's last offset is stored as the partition's persisted offset (RocksDB's recovery start)
    assert {tp.partition: offset for tp, offset in table.data.persisted.items()} == {1: 1, 3: 299}


def test_write_back_counts_the_changelog_messages_of_all_its_tables() -> None:
    """What ``stormwatch_state_writes_total`` adds per batch: one message per changed key, a key
    changed twice counted once, one created and deleted in the batch not at all."""
    from streams.kafka.state import write_back

    first, second = Table(), Table()
    second.data.update(old=1)
    a, b = TableState(first), TableState(second)
    a["x"], a["x"], a["y"] = 1, 2, 3
    a["gone"] = 4
    del a["gone"]
    del b["old"]
    producer = Producer()

    def make_current(partition: int) -> None:
        first.data.partition = second.data.partition = partition

    assert asyncio.run(write_back([a, b], make_current, producer)) == 3
    assert sum(len(records) for _topic, _partition, records in producer.sent) == 3


def test_records_are_encoded_in_the_bytes_fausts_json_codec_writes() -> None:
    """The changelog bypasses Faust's codec chain for speed (table_json): Faust restores the
    table from these bytes, so they must be its own, whatever a record holds: nested values,
    tuples, escapes, unicode, floats, a dict with keys that are not strings, a datetime."""
    import datetime
    import uuid

    from faust.serializers import codecs

    from streams.kafka.state import table_json

    values = [
        "plain", "a\tb\x00<script>\u202e", "水军\U0001f600", 0, -1, 2**53, 1.5e-300, 1e300, 0.1, True, None,
        {"m": {"acct": (1.7e9, "post", ("harmful",), {"n": 3.25, "sig": [True, False, None, "1.2.3"]})}, "first": 1.7e9},
        {1: "int key", 2.5: "float key", "s": [1, (2, 3)]},
        {"when": datetime.datetime(2026, 12, 4, 11, 0, tzinfo=datetime.timezone.utc), "id": uuid.UUID(int=7)},
        [[], {}, ""],
    ]
    for value in values:
        assert table_json(value) == codecs.dumps("json", value), value
    with pytest.raises(TypeError):
        codecs.dumps("json", object())
    with pytest.raises(TypeError):
        table_json(object())


def test_a_changelog_send_that_fails_keeps_what_was_not_submitted() -> None:
    """A send that raises (the producer stopping) leaves the partition's messages queued, so a
    next try sends them rather than losing changes the store already holds."""
    table = Table()
    state = TableState(table)
    for partition in (0, 1):
        state.partition = partition
        state[f"k{partition}"] = partition
    state.flush(enter(table))

    class Failing(Producer):
        async def send_batch(self, batch, topic: str, *, partition: int):  # noqa: ANN001, ANN201
            assert batch.closed()  # nothing else may join a batch once it is handed over
            if partition == 1:
                raise RuntimeError("producer stopped")
            return await super().send_batch(batch, topic, partition=partition)

    failing = Failing()
    with pytest.raises(RuntimeError):
        asyncio.run(state.send_changelog(failing))
    assert [p for _t, p, _m in failing.sent] == [0] and list(state.outgoing) == [1]
    retry = Producer()
    asyncio.run(state.send_changelog(retry))
    assert retry.sent == [("app-det-changelog", 1, [(b'"k1"', b"1")])] and state.outgoing == {}


def _on(states: dict, partition: int) -> dict:
    """Each table's changelog messages on ``partition``, as the stage hands them to ``redo_parts``."""
    return {name: state.encode().get(partition, []) for name, state in states.items()}


def test_a_redo_record_gives_back_the_batchs_changes_and_the_changelog_the_same_bytes() -> None:
    """A kill between a batch's redo record and its table writes is mended by applying the redo
    record again: it must hold every change of the partition (deletes too, hostile keys as
    they are), in parts of bounded size, and a part of a later record must not be applied."""
    from faust.serializers import codecs

    from streams.kafka.state import redo_changes, redo_parts

    det, timers = Table(), Table()
    det.data.update(gone=1)
    states = {"det": TableState(det), "det-timers": TableState(timers)}
    states["det"].partition = 2
    del states["det"]["gone"]
    for i in range(40):
        states["det"][f"a\t<{i}>"] = {"until": 1.5, "text": "水军" * 20}
    states["det-timers"].partition = 2
    states["det-timers"]["t"] = [1, 2]
    states["det"].partition = 0
    states["det"]["elsewhere"] = 0
    parts = redo_parts(states, _on(states, 2), "s1", limit=1000)
    assert len(parts) > 2 and all(len(part) <= 1000 for part in parts)
    stored = {"2": orjson.dumps({"seq": "s1", "parts": len(parts)}), **{f"2\t{i}": p for i, p in enumerate(parts)}}
    changes = redo_changes(stored.get, 2)
    assert changes == [("det", ["gone"]), *[("det", [f"a\t<{i}>", {"until": 1.5, "text": "水军" * 20}]) for i in range(40)],
                       ("det-timers", ["t", [1, 2]])]
    assert redo_changes(stored.get, 0) == []
    # the flush after it sends the bytes the redo record was built from
    states["det"].flush(enter(det))
    assert states["det"].outgoing[2][1] == (codecs.dumps("json", "a\t<0>"), codecs.dumps("json", {"until": 1.5, "text": "水军" * 20}))
    assert states["det"].outgoing[2][0] == (b'"gone"', None) and states["det"].outgoing[0] == [(b'"elsewhere"', b"0")]
    # applied to a fresh state, the same changes are pending again
    again = {"det": TableState(Table()), "det-timers": TableState(Table())}
    for name, change in changes:
        again[name].redo(change, 2)
    assert again["det"]["a\t<3>"]["text"] == "水军" * 20 and "gone" not in again["det"]
    # a part written by the next batch, whose head never arrived: nothing is applied
    assert redo_changes({**stored, "2\t1": redo_parts(states, _on(states, 2), "s2", 1000)[0]}.get, 2) is None
    # records from before the values were bytes (dicts) still read
    old = {"2": {"seq": "s0", "parts": 1}, "2\t0": {"seq": "s0", "changes": [["det", "k", 5]]}}
    assert redo_changes(old.get, 2) == [("det", ["k", 5])]


def test_each_partition_encodes_its_own_changes_and_later_changes_are_not_missed() -> None:
    """A batch's changes are encoded in one pass, grouped by partition, for its redo records:
    each partition's messages hold its changes only, in the order they were made, and a change
    made after an encoding (a key moved to another partition, a new key, a delete) is in the
    next encoding and in the flush."""
    table = Table()
    table.data.update(old=1)
    state = TableState(table)
    for i in range(6):
        state.partition = i % 3
        state[f"k{i}"] = i
    assert state.encode()[1] == [(b'"k1"', b"1"), (b'"k4"', b"4")] and state.encode()[2] == [(b'"k2"', b"2"), (b'"k5"', b"5")]
    state.partition = 2
    state["k1"] = 10  # now partition 2's
    state["k9"] = 9
    del state["old"]
    assert state.encode()[1] == [(b'"k4"', b"4")]
    assert state.encode()[2] == [(b'"k1"', b"10"), (b'"k2"', b"2"), (b'"k5"', b"5"), (b'"k9"', b"9"), (b'"old"', None)]
    state.flush(enter(table))
    assert state.outgoing[0] == [(b'"k0"', b"0"), (b'"k3"', b"3")] and state.outgoing[1] == [(b'"k4"', b"4")]
    assert state.outgoing[2] == [(b'"k1"', b"10"), (b'"k2"', b"2"), (b'"k5"', b"5"), (b'"k9"', b"9"), (b'"old"', None)]
    assert state.encode() == {} and table.data["k1"] == 10 and "old" not in table.data


def test_a_dropped_batch_leaves_no_stale_encoding() -> None:
    """Detectors change records in place: bytes encoded for a batch that was dropped must not
    be sent for the same object changed in the next one."""
    table = Table()
    state = TableState(table)
    record = {"n": 1}
    state["k"] = record
    state.encode()
    state.drop()
    record["n"] = 2
    state["k"] = record
    state.flush(enter(table))
    assert state.outgoing[0] == [(b'"k"', b'{"n":2}')]


def test_detectors_keyed_alike_share_one_stage() -> None:
    """The cascade watch goes where its key is shared: with cascades keyed by root, OrderWatch's
    post key; keyed by platform, a stage of its own. The water army's four stages each have
    their own key (account, object, pair, platform)."""
    from detectors.cascades import CascadeSettings

    army = {"army_accounts": ["army_accounts"], "army_objects": ["army_objects"], "army_pairs": ["army_pairs"],
            "water_army": ["water_army"]}
    groups = stages(build_detectors(Settings()))
    assert {name: [d.name for d in ds] for name, ds in groups.items()} == {
        "posts": ["order_watch", "post_targets"], "orders": ["orders"], **army, "platform": ["cascade_watch"],
        "cascades": ["cascades"], "targets": ["targets"]}
    groups = stages(build_detectors(Settings(cascades=CascadeSettings(root_ids_given=["weibo"]))))
    assert {name: [d.name for d in ds] for name, ds in groups.items()} == {
        "posts": ["order_watch", "cascade_watch", "post_targets"], "orders": ["orders"], **army,
        "cascades": ["cascades"], "targets": ["targets"]}


def test_a_detector_that_receives_emitted_events_runs_alone() -> None:
    class Sender:
        name: ClassVar[str] = "sender"
        emits: ClassVar[frozenset[str]] = frozenset({"receiver"})

    class Receiver:
        name: ClassVar[str] = "receiver"
        stage: ClassVar[str] = "shared"

    class Other:
        name: ClassVar[str] = "other"
        stage: ClassVar[str] = "shared"

    with pytest.raises(ValueError, match="run alone"):
        stages([Sender(), Receiver(), Other()])
    assert set(stages([Sender(), Receiver()])) == {"sender", "shared"}


class _Event:
    """The current event Faust's stores read a partition from (weak-referenced, so a class)."""

    def __init__(self, partition: int) -> None:
        self.message = type("Message", (), {"partition": partition})()


def _faust_table(store: str, datadir):  # noqa: ANN001, ANN202
    import faust

    app = faust.App(f"state-{store[:3]}", broker="kafka://127.0.0.1:1", store=store, datadir=str(datadir))
    return app, app.Table("det", default=None, partitions=4,
                          schema=faust.Schema(key_serializer="json", value_serializer="json"))


def test_iterating_a_rocksdb_table_yields_only_the_current_partition_and_never_raises(tmp_path) -> None:
    """Issue 13: Faust iterates every active partition's database but looks a key up only in the
    current event's, so the engine's rebuild raised KeyError on the other partitions' keys."""
    from unittest import mock

    from faust.types import TP
    from streams.kafka.stage import _as_current

    app, table = _faust_table("rocksdb://", tmp_path)
    store = table.data
    for partition, keys in ((0, ["acct", "~buffered\t0\tx"]), (1, ["weibo\tp1"])):
        db = store._db_for_partition(partition)
        for key in keys:
            db.put(store._encode_key(key), store._encode_value({"until": 10, "p": partition}))
    event = _Event(0)
    _as_current(event)  # type: ignore[arg-type]
    try:
        actives = {TP(table.changelog_topic_name, p) for p in (0, 1)}
        with mock.patch.object(app.assignor, "assigned_actives", return_value=actives):
            with pytest.raises(KeyError):  # Faust's own iteration, what MutableMapping.items did
                [(key, table[key]) for key in table]
        state = TableState(table)
        state.partition = 0
        state["new"] = {"until": 5}  # pending, for partition 0
        state.partition = 1
        state["other"] = {"until": 5}  # pending, for partition 1
        state.partition = 0
        assert dict(state.items()) == {"acct": {"until": 10, "p": 0}, "~buffered\t0\tx": {"until": 10, "p": 0},
                                       "new": {"until": 5}}
        assert sorted(state) == ["acct", "new", "~buffered\t0\tx"] and len(state) == 3
        state.partition = 1
        assert sorted(state) == ["other", "weibo\tp1"]
    finally:
        _as_current(None)


def test_iterating_a_memory_table_yields_the_keys_of_the_current_partition(tmp_path) -> None:
    from unittest import mock

    from streams.kafka.stage import _as_current

    _app, table = _faust_table("memory://", tmp_path)
    store = table.data
    store.data.update({"recovered0": 1, "recovered1": 2})
    store._key_partition.update({"recovered0": 0, "recovered1": 1})
    state = TableState(table)
    state.partition = 1
    state["mine1"] = 3
    events = {1: _Event(1)}
    with mock.patch.object(table, "send_changelog"), mock.patch.object(table, "partition_for_key", return_value=1):
        state.flush(lambda p: _as_current(events[p]))  # type: ignore[arg-type]  # no broker: the store only
    _as_current(None)
    assert store.data["mine1"] == 3
    state.partition = 0
    assert dict(state.items()) == {"recovered0": 1}
    state.partition = 1
    assert dict(state.items()) == {"recovered1": 2, "mine1": 3}


def test_get_reads_pending_changes_then_the_store_and_gives_the_default_for_missing_or_deleted(tmp_path) -> None:
    """``get`` (the records' hottest path) must answer as ``Mapping.get`` would, on Faust's
    memory store (read through its dict) and on any other store (through its lookup)."""
    _app, table = _faust_table("memory://", tmp_path)
    table.data.data.update({"stored": {"n": 1}, "gone": {"n": 2}})
    for state in (TableState(table), TableState(Table())):
        if not isinstance(state.table, Table):
            assert state.get("stored") == {"n": 1}
        state["new"] = {"n": 3}
        state["gone"] = {"n": 2}
        del state["gone"]
        assert state.get("new") == {"n": 3} and state.get("gone") is None and state.get("gone", 7) == 7
        assert state.get("never") is None and state.get("never", 7) == 7


def test_a_detector_chosen_alone_brings_the_filter_that_feeds_it() -> None:
    """STORMWATCH_DETECTORS=orders runs the ledger with OrderWatch, which hands it its posts;
    OrderWatch raises nothing, so choosing it alone is choosing nothing the user can see."""
    assert [d.name for d in build_detectors(Settings(detectors="orders"))] == ["order_watch", "orders"]
    assert [d.name for d in build_detectors(Settings(detectors="water_army"))] == [
        "army_accounts", "army_objects", "army_pairs", "water_army"]  # the chain that feeds it, link by link
    assert [d.name for d in build_detectors(Settings(detectors="targets"))] == ["post_targets", "targets"]
    with pytest.raises(ValueError, match="order_watch hands events to \\['orders'\\]"):
        build_detectors(Settings(detectors="order_watch"))


def test_a_raw_valued_table_sends_its_bytes_as_they_are() -> None:
    """The redo table's values are JSON bytes already; the table reports the ``json`` codec all
    the same (its schema says raw), which would send them quoted as a JSON string and leave a
    restarted worker unable to read its redo record."""
    import asyncio

    table = Table()
    state = TableState(table, raw_values=True)
    state.partition = 2
    state["2\t0"] = b'{"seq":"s","changes":[["det","k",1]]}'
    state["2"] = b'{"seq":"s","parts":1}'
    assert state.flush(enter(table)) == 2
    producer = Producer()
    asyncio.run(state.send_changelog(producer))
    assert producer.sent == [("app-det-changelog", 2, [(b'"2\\t0"', b'{"seq":"s","changes":[["det","k",1]]}'),
                                                       (b'"2"', b'{"seq":"s","parts":1}')])]
    state["3"] = {"not": "bytes"}
    with pytest.raises(TypeError, match="must be bytes"):
        state.flush(enter(table))
