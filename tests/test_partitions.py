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
