"""The worker's write-back table state and its stage grouping (the Kafka paths run in
test_kafka_pipeline: a restarted worker restores these tables from their changelogs)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from streams.registry import build_detectors, stages
from streams.settings import Settings
from streams.state import TableState


class Table(dict):
    """Stands in for a Faust table: records each write with the partition it was made for."""

    def __init__(self) -> None:
        super().__init__()
        self.partition = None
        self.log: list[tuple] = []

    def __setitem__(self, key, value) -> None:
        self.log.append(("set", self.partition, key))
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.log.append(("del", self.partition, key))
        super().__delitem__(key)


def enter(table: Table):
    def make_current(partition: int) -> None:
        table.partition = partition
    return make_current


def test_changes_wait_for_the_flush_and_reads_see_them() -> None:
    table = Table()
    state = TableState(table)
    state["a"] = {"n": 1}
    state["a"] = {"n": 2}
    assert state["a"] == {"n": 2} and "a" in state and table == {}
    assert state.flush(enter(table)) == 1
    assert table == {"a": {"n": 2}} and table.log == [("set", 0, "a")]


def test_a_key_created_and_deleted_in_one_batch_costs_nothing() -> None:
    table = Table()
    state = TableState(table)
    state["buffered"] = [1]
    del state["buffered"]
    assert "buffered" not in state and state.get("buffered") is None
    with pytest.raises(KeyError):
        del state["buffered"]
    assert state.flush(enter(table)) == 0 and table.log == []


def test_deleting_a_stored_key_reaches_the_table() -> None:
    table = Table()
    table.update(old=1, kept=2)
    state = TableState(table)
    assert state.pop("old") == 1
    state["new"] = 3
    assert sorted(state) == ["kept", "new"] and len(state) == 2
    state.flush(enter(table))
    assert table == {"kept": 2, "new": 3}


def test_each_change_is_written_for_the_partition_it_was_made_on() -> None:
    table = Table()
    state = TableState(table)
    for partition, key in [(2, "x"), (0, "y"), (2, "z")]:
        state.partition = partition
        state[key] = partition
    state.flush(enter(table))
    assert table.log == [("set", 0, "y"), ("set", 2, "x"), ("set", 2, "z")]


def test_platform_keyed_detectors_share_one_stage() -> None:
    groups = stages(build_detectors(Settings()))
    assert {name: [d.name for d in ds] for name, ds in groups.items()} == {
        "platform": ["orders", "water_army", "cascades"], "post_targets": ["post_targets"], "targets": ["targets"]}


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

    with pytest.raises(AssertionError, match="run alone"):
        stages([Sender(), Receiver(), Other()])
    assert set(stages([Sender(), Receiver()])) == {"sender", "shared"}
