"""``replay --partitions N``: the worker's stages and routing in process; N changes no alert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.cascades import CascadeSettings
from streams.local import LocalPipeline
from streams.partitioned import PartitionedPipeline
from streams.registry import partition_of
from streams.settings import Settings
from commands.simulator import SimConfig, redeliver, simulate_lines


def alerts_of(pipeline_factory, lines: list[bytes]) -> tuple[list[bytes], list]:
    alerts, letters = [], []
    pipeline = pipeline_factory(lambda a: alerts.append(a.to_json()), letters.append)
    for n, line in enumerate(lines, 1):
        pipeline.feed(line, f"t:{n}")
    pipeline.finish()
    return alerts, letters


def test_keys_go_to_the_partition_the_workers_producer_picks() -> None:
    """The stage topics are written by Faust's producer (aiokafka's partitioner); the input
    topics by ``stormwatch produce`` (kafka-python's, the same murmur2 rule)."""
    from aiokafka.partitioner import DefaultPartitioner

    for n in (1, 4, 8):
        for key in (b"weibo", "用户-林".encode(), b"order\t1", *(f"k{i}".encode() for i in range(100)),
                    b"x" * 129, ("林" * 256 + "\t" + "用" * 256).encode()):  # long keys: not cached
            expected = DefaultPartitioner()(key, list(range(n)), list(range(n)))
            assert partition_of(key, n) == expected


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64) | st.text(max_size=40).map(str.encode))
def test_our_murmur2_is_kafkas(data: bytes) -> None:
    """Every length modulo 4, any byte, as kafka-python's and aiokafka's (pure Python, slower)."""
    from aiokafka.partitioner import murmur2 as aiokafkas
    from kafka.partitioner.default import murmur2 as kafka_pythons

    from streams.registry import murmur2

    assert murmur2(data) == kafka_pythons(data) & 0xFFFFFFFF == aiokafkas(data) & 0xFFFFFFFF


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), partitions=st.integers(1, 8), duplicates=st.booleans(), by_root=st.booleans())
def test_the_partition_count_changes_no_alert(seed: int, partitions: int, duplicates: bool, by_root: bool) -> None:
    """Also with the simulated platform's cascades keyed by root (it sends every root_id): the
    same alerts as the platform-keyed chain, on any number of partitions."""
    lines = list(simulate_lines(SimConfig(seed=seed, minutes=12, organic_per_s=2, army_accounts=15,
                                          viral_reposts=600)))
    if duplicates:
        lines = redeliver(lines, share=0.1, seed=seed)
    keyed = Settings(cascades=CascadeSettings(root_ids_given=["weibo"] if by_root else []))
    one, _ = alerts_of(lambda a, d: LocalPipeline(Settings(), a, d), lines)
    many, letters = alerts_of(lambda a, d: PartitionedPipeline(keyed, partitions, a, d), lines)
    assert letters == []
    assert one and sorted(many) == sorted(one)


def test_replay_partitions_writes_the_same_alerts_and_per_partition_stats(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(simulate_lines(SimConfig(minutes=12, organic_per_s=3))) + b"\n")
    outputs = {}
    for n in (None, 1, 4, 8):
        out, stats = tmp_path / f"{n}.alerts", tmp_path / f"{n}.stats.json"
        extra = [] if n is None else ["--partitions", str(n), "--stats-out", str(stats)]
        done = subprocess.run([stormwatch_bin, "replay", str(src), "--alerts-out", str(out), *extra],
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[n] = sorted(out.read_bytes().splitlines())
        if n is not None:
            figures = orjson.loads(stats.read_bytes())
            assert figures["partitions"] == n
            assert set(figures["stages"]) == {"cascades", "orders", "platform", "posts", "targets", "army_accounts",
                                              "army_objects", "army_pairs", "water_army"}
            for stage in figures["stages"].values():
                assert len(stage["events"]) == len(stage["cpu_s"]) == n
            assert sum(figures["stages"]["platform"]["events"]) > 1000
            assert sum(figures["stages"]["army_objects"]["events"]) > sum(figures["stages"]["army_accounts"]["events"])
    assert outputs[None] and outputs[1] == outputs[4] == outputs[8] == outputs[None]


def test_a_copy_stamped_later_at_the_end_moves_no_time_on_any_partition_count() -> None:
    """The input's end takes every partition to the latest time seen, as far as one source got:
    a copy the engines dropped is not a time seen (it once fired an overdue order with
    partitions and not without)."""
    lines = [orjson.dumps(e) for e in (
        {"type": "order", "event_id": "e8", "platform": "weibo", "ts": "2026-11-30T08:00:00+08:00",
         "order_id": "o1", "regulator": "cac", "deadline": "2026-11-30T08:10:00+08:00",
         "legal_basis": "规定 第20条", "measures": ["remove_content"], "items": [{"post_id": "p1"}]},
        {"type": "post", "event_id": "e9", "platform": "weibo", "ts": "2026-11-30T08:01:00+08:00", "post_id": "px",
         "account_id": "a1", "kind": "original"},
        {"type": "post", "event_id": "e9", "platform": "weibo", "ts": "2026-11-30T08:20:00+08:00", "post_id": "px",
         "account_id": "a1", "kind": "original"})]
    for partitions in (1, 4):
        alerts, letters = alerts_of(lambda a, d: PartitionedPipeline(Settings(), partitions, a, d), lines)
        assert (alerts, letters) == ([], [])


def test_each_partition_sweeps_and_indexes_only_its_own_seen_records() -> None:
    """In process the partitions of a stage share one dict: a partition opened later must not
    sweep the others' seen records (their indexes would keep the events, and a late copy would
    be dropped as a copy instead of dead-lettered as late, as on one partition)."""
    post = {"type": "post", "event_id": "e2", "platform": "weibo", "ts": "2026-11-30T08:00:00+08:00",
            "post_id": "p2", "account_id": "acc-p2", "kind": "original"}
    lines = [orjson.dumps(e) for e in (post, {"type": "tick", "ts": "2026-11-30T08:01:00+08:00"},
                                       {"type": "tick", "ts": "2026-11-30T09:10:00+08:00"}, post)]
    for partitions in (1, 4):
        _alerts, letters = alerts_of(lambda a, d: PartitionedPipeline(Settings(), partitions, a, d), lines)
        assert letters and all(letter.reason == "late" for letter in letters), (partitions, letters)


def test_murmur2_takes_any_buffer_as_the_clients_do() -> None:
    """The compiled murmur2 takes ``bytes`` alone; kafka-python's and aiokafka's take any buffer."""
    from kafka.partitioner.default import murmur2 as kafka_pythons

    from streams.registry import murmur2

    for data in (b"", b"weibo\t<b>", "水军".encode() * 33):
        for buffer in (data, bytearray(data), memoryview(data)):
            assert murmur2(buffer) == kafka_pythons(data) & 0xFFFFFFFF
