"""``stormwatch replay``: byte-identical output, exact dead-lettering, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.simulator import SimConfig, simulate_lines
from tests.support.events import action, lines, order, tick

SMALL = SimConfig(minutes=20, organic_per_s=5)

BAD_LINES = [
    b"{not json",
    b"[]",
    b'{"type": "tweet", "event_id": "x", "platform": "w", "ts": "2026-11-30T00:00:00Z"}',
    b'{"type": "order", "event_id": "x", "platform": "w", "ts": "2026-11-30T00:00:00Z", "order_id": "o9", '
    b'"regulator": "cac", "deadline": null}',
    b'{"type": "engagement", "event_id": "x", "platform": "w", "ts": "2026-11-30T00:00:00", "post_id": "p"}',
    b'{"type": "post", "event_id": "x", "platform": "w", "ts": "2026-11-30T00:00:00Z", "post_id": "p", '
    b'"account_id": "a", "kind": "original", "text": "\\udc00"}',
    "\u00e9".encode("latin-1"),
]


def write_scenario(path: Path, bad_every: int = 0) -> int:
    """The small simulated hour, with a bad line after every ``bad_every`` good ones; returns bad count."""
    bad = 0
    with path.open("wb") as out:
        for n, line in enumerate(simulate_lines(SMALL), 1):
            out.write(line + b"\n")
            if bad_every and n % bad_every == 0:
                out.write(BAD_LINES[bad % len(BAD_LINES)] + b"\n\n")  # a blank line too: skipped, not dead
                bad += 1
    return bad


def replay(bin_: str, src: Path, tmp: Path, name: str) -> tuple[bytes, list[dict], subprocess.CompletedProcess]:
    alerts, dead = tmp / f"{name}.alerts.jsonl", tmp / f"{name}.dead.jsonl"
    done = subprocess.run([bin_, "replay", str(src), "--alerts-out", str(alerts), "--deadletter-out", str(dead)],
                          capture_output=True, timeout=120)
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    return alerts.read_bytes(), letters, done


def test_replay_is_byte_identical_and_dead_letters_exactly_the_bad_lines(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    bad = write_scenario(src, bad_every=487)
    first, letters, done = replay(stormwatch_bin, src, tmp_path, "one")
    second, _, _ = replay(stormwatch_bin, src, tmp_path, "two")
    assert done.returncode == 0, done.stderr
    assert first == second and first  # the simulated overdue and refused orders alert every run
    alerts = [orjson.loads(line) for line in first.splitlines()]
    assert sorted(a["kind"] for a in alerts if a["kind"].startswith("order")) == [
        "order_overdue", "order_overdue", "order_refused"]
    army = {acc for a in alerts if a["kind"] == "water_army_campaign" for acc in a["evidence"]["accounts"]}
    assert army and all(acc.startswith("army") for acc in army)  # the simulated water army, no one else
    assert bad > 10 and len(letters) == bad
    assert all(letter["source"].startswith("events.jsonl:") and letter["error"] for letter in letters)
    assert {letter["reason"] for letter in letters} == {"invalid_json", "not_object", "unknown_type",
                                                        "invalid_field"}


def test_replay_of_an_unreadable_file_fails(stormwatch_bin: str, tmp_path: Path) -> None:
    done = subprocess.run([stormwatch_bin, "replay", str(tmp_path / "missing.jsonl")], capture_output=True)
    assert done.returncode != 0
    assert b"cannot read" in done.stderr


def test_replay_writes_alerts_to_stdout_by_default(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "orders.jsonl"
    src.write_bytes(lines([order("o1", 0, 30), action("a1", "o1", 3, "refused"), tick(40)]))
    done = subprocess.run([stormwatch_bin, "replay", str(src)], capture_output=True, timeout=60)
    out = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [a["kind"] for a in out] == ["order_refused", "order_overdue"]
    assert b"3 events, 0 dead letters, 2 alert versions" in done.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.binary(min_size=1, max_size=80).filter(lambda b: b.strip() and b"\n" not in b
                                                                  and b"\r" not in b), min_size=1, max_size=15))
def test_garbage_lines_are_all_dead_lettered_and_the_rest_processed(tmp_path: Path, garbage: list[bytes]) -> None:
    from streams.local import LocalPipeline, replay_lines
    from streams.settings import Settings

    good = [order("o1", 0, 30), action("a1", "o1", 3, "content_removed"), tick(40)]
    src = tmp_path / "mixed.jsonl"
    body = b""
    for i, raw in enumerate(garbage):
        body += raw + b"\n" + (lines([good[i]]) if i < len(good) else b"")
    body += lines(good[len(garbage):])
    src.write_bytes(body)
    alerts, letters = [], []
    pipeline = LocalPipeline(Settings(), alerts.append, letters.append)
    replay_lines(pipeline, src)
    assert len(letters) == len(garbage)  # random bytes never form a valid event
    assert [a.kind for a in alerts] == ["order_overdue"]


def test_detectors_setting_runs_only_the_named_detectors(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "sim.jsonl"
    write_scenario(src)
    everything, _, _ = replay(stormwatch_bin, src, tmp_path, "all")
    kinds_all = {orjson.loads(line)["kind"] for line in everything.splitlines()}
    assert "water_army_campaign" in kinds_all and len(kinds_all) > 1
    env = {**os.environ, "STORMWATCH_DETECTORS": "water_army"}
    only = tmp_path / "only.jsonl"
    subprocess.run([stormwatch_bin, "replay", str(src), "--alerts-out", str(only)], env=env, check=True, timeout=120)
    chosen = [orjson.loads(line) for line in only.read_bytes().splitlines()]
    assert chosen and {a["kind"] for a in chosen} == {"water_army_campaign"}
    # the water army's verdicts do not depend on which other detectors run beside it
    assert [a for a in map(orjson.loads, everything.splitlines()) if a["kind"] == "water_army_campaign"] == chosen
    bad = subprocess.run([stormwatch_bin, "replay", str(src)], env={**env, "STORMWATCH_DETECTORS": "water_army,nope"},
                         capture_output=True, timeout=120)
    assert bad.returncode != 0 and b"nope" in bad.stderr


@pytest.mark.parametrize("pipeline", ["from streams.local import LocalPipeline; LocalPipeline(Settings(), print, print)",
                                      "from streams.partitioned import PartitionedPipeline; "
                                      "PartitionedPipeline(Settings(), 2, print, print)"])
def test_the_pipeline_sets_the_cycle_collector_from_settings(pipeline: str) -> None:
    """Replay (with --partitions too), demo and the benchmarks get the tuned collector; 0 leaves
    Python's default."""
    probe = f"import gc; from streams.settings import Settings; {pipeline}; print(*gc.get_threshold())"
    seen = {}
    for value in ("12345", "0"):
        env = {**os.environ, "STORMWATCH_GC_THRESHOLD": value, "STORMWATCH_GC_MIDDLE_PASSES": value[:2]}
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                              timeout=60)
        seen[value] = done.stdout.split()
    assert seen["12345"] == ["12345", "12", "10"]
    assert seen["0"] == ["700", "10", "10"]
    default = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if not k.startswith("STORMWATCH_GC")})
    assert default.stdout.split()[-3:] == ["50000", "100", "10"]
