"""Two RocksDB workers over a simulated stream, with or without a SIGKILL: for the crash test
(``tests/test_kafka_crash.py``) and the recovery benchmark (``benchmarks/recovery.py``).

The reference is ``stormwatch replay`` over the same file. Kafka delivers at least once, so an
alert version may come twice; consumers keep the latest version per ``alert_id``, and that is
what is compared, every field.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition

from commands.simulator import SimConfig, simulate_lines
from tests.support.kafka_broker import KafkaBroker
from tests.support.worker import Worker

PARTITIONS = 4


def write_stream(path: Path, minutes: int, per_s: float, seed: int = 7) -> int:
    """The simulator's stream (one platform's ``minutes``) as JSON Lines; returns the line count."""
    n = 0
    with path.open("wb") as out:
        for line in simulate_lines(SimConfig(seed=seed, minutes=minutes, organic_per_s=per_s)):
            out.write(line + b"\n")
            n += 1
    return n


def replay_alerts(bin_: str, src: Path, workdir: Path) -> list[dict]:
    out = workdir / "replay.alerts.jsonl"
    subprocess.run([bin_, "replay", str(src), "--alerts-out", str(out)], check=True, capture_output=True,
                   timeout=600)
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def latest(alerts: list[dict]) -> dict[str, dict]:
    """The latest version of each alert (what a consumer keeps)."""
    out: dict[str, dict] = {}
    for alert in alerts:
        seen = out.get(alert["alert_id"])
        if seen is None or alert["version"] >= seen["version"]:
            out[alert["alert_id"]] = alert
    return out


def versions(alerts: list[dict]) -> set[tuple[str, int]]:
    return {(a["alert_id"], a["version"]) for a in alerts}


def diff(got: dict[str, dict], expected: dict[str, dict]) -> dict[str, int]:
    """How the latest alerts differ: missing, extra and changed alert ids."""
    return {"missing": len(expected.keys() - got.keys()), "extra": len(got.keys() - expected.keys()),
            "changed": sum(1 for k in expected.keys() & got.keys() if got[k] != expected[k])}


def explain(reader: "TopicReader", expected: list[dict], dead: list[dict] | None = None,
            counters: dict | None = None, limit: int = 3) -> str:
    """Why the latest alerts differ from replay's, for a failure message: per differing alert (at
    most ``limit``) the fields that differ (replay's, then the topic's), every version of it on
    the topic with its partition, offset and time, and the versions replay raised; then dead
    letters by reason and the given counters."""
    got, want = latest(reader.records), latest(expected)
    lines = [f"diff {diff(got, want)}"]
    bad = sorted(k for k in want.keys() | got.keys() if got.get(k) != want.get(k))
    for alert_id in bad[:limit]:
        g, w = got.get(alert_id) or {}, want.get(alert_id) or {}
        lines.append(f"alert {alert_id}: replay v{w.get('version')}, topic v{g.get('version')}")
        for name in sorted(g.keys() | w.keys()):
            if g.get(name) != w.get(name):
                lines.append(f"  {name}: replay {str(w.get(name))[:300]} | topic {str(g.get(name))[:300]}")
        by_version = {a["version"]: a for a in expected if a["alert_id"] == alert_id}
        lines.append(f"  replay versions: {sorted(by_version)}")
        for record, (partition, offset, ts) in zip(reader.records, reader.where):
            if record["alert_id"] == alert_id:
                same = by_version.get(record["version"]) == record
                lines.append(f"  topic v{record['version']} p{partition}@{offset} t={ts} "
                             f"{'= replay' if same else '!= replay'}")
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more")
    if dead is not None:
        reasons: dict[str, int] = {}
        for letter in dead:
            reasons[str(letter.get("reason"))] = reasons.get(str(letter.get("reason")), 0) + 1
        lines.append(f"dead letters by reason: {reasons}")
        late = [d for d in dead if d.get("reason") != "detector_error"][:3]
        if late:
            lines.append(f"  first: {late}")
    if counters:
        lines.append(f"counters: {counters}")
    return "\n".join(lines)


class TopicReader:
    """Follows one topic from its start, keeping every record read so far."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                                      auto_offset_reset="earliest", consumer_timeout_ms=200)
        self.topic = topic
        self.records: list[dict] = []
        self.where: list[tuple[int, int, int]] = []  # (partition, offset, timestamp ms) of each record
        self.last_new = time.monotonic()  # when the latest new record came
        self.assigned = False

    def poll(self) -> list[dict]:
        if not self.assigned:
            parts = self.consumer.partitions_for_topic(self.topic)
            if not parts:
                return []
            self.consumer.assign([TopicPartition(self.topic, p) for p in parts])
            self.assigned = True
        messages = [m for batch in self.consumer.poll(timeout_ms=500, max_records=5000).values() for m in batch]
        new = [orjson.loads(m.value) for m in messages]
        if new:
            self.records.extend(new)
            self.where.extend((m.partition, m.offset, m.timestamp) for m in messages)
            self.last_new = time.monotonic()
        return new

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Pair:
    """Two workers of one group, each with its own RocksDB data folder (``<workdir>/w<i>/data``)."""

    broker: KafkaBroker
    bin: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    app_id: str = field(default_factory=lambda: f"crash-{uuid.uuid4().hex[:8]}")
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        # the simulator sends every root_id: its cascades are keyed by root, spread over the partitions
        env = {"STORMWATCH_STORE": "rocksdb://", "STORMWATCH_TICK_INTERVAL_S": "0",
               "STORMWATCH_CASCADES__ROOT_IDS_GIVEN": '["weibo"]', **self.extra_env}
        for i in range(2):
            home = self.workdir / f"w{i}"
            home.mkdir(parents=True, exist_ok=True)
            self.workers.append(Worker(self.broker, self.bin, home, app_id=self.app_id, partitions=PARTITIONS,
                                       extra_env=env))

    def start(self) -> "Pair":
        for w in self.workers:
            w.start(timeout=120)
        return self

    def kill(self, i: int) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        process = self.workers[i].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()

    def restart(self, i: int) -> None:
        """The same worker again: same data folder, same port."""
        self.workers[i].start(timeout=120)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def topic(self, name: str) -> str:
        return f"{self.app_id}.{name}"

    def owner_of_busiest(self) -> int:
        """The worker that owns the ledger's partition of the simulator's platform (its orders,
        actions and refusal history meet there), by the lag gauge's labels; 0 when that is not
        known yet."""
        from kafka.partitioner.default import murmur2

        partition = str((murmur2(b"weibo") & 0x7FFFFFFF) % PARTITIONS)
        stage = self.topic(f"{self.app_id}-stage-orders")
        for i, w in enumerate(self.workers):
            try:
                samples = w.samples("stormwatch_consumer_lag")
            except Exception:  # not answering: try the other
                continue
            if any(s.labels.get("topic") == stage and s.labels.get("partition") == partition for s in samples):
                return i
        return 0

    def counter(self, name: str) -> float:
        """A counter summed over the running workers (a killed worker's count is gone with it)."""
        total = 0.0
        for w in self.workers:
            if w.process is None or w.process.poll() is not None:
                continue
            try:
                total += sum(s.value for s in w.samples(name) if s.name.endswith("_total"))
            except Exception:
                continue
        return total


def wait_for(reader: TopicReader, expected: dict[str, dict], timeout: float, quiet: float = 5.0,
             idle: float | None = None) -> bool:
    """Read alerts until the latest versions equal ``expected``, then ``quiet`` seconds more for
    stragglers; False at the timeout or, with ``idle``, once no alert record came for that long.
    A slow machine only delays the alerts (a busy CI runner took four minutes where a quiet one
    takes one), so the tests cap the wait at ``timeout`` and give up early only when nothing moves."""
    start = time.monotonic()
    deadline = start + timeout
    equal_since: float | None = None
    seen, moved = 0, start
    while time.monotonic() < deadline:
        reader.poll()
        if len(reader.records) != seen:
            seen, moved = len(reader.records), time.monotonic()
        if latest(reader.records) == expected:
            equal_since = equal_since or time.monotonic()
            if time.monotonic() - equal_since >= quiet:
                return True
        else:
            equal_since = None
            if idle is not None and time.monotonic() - moved >= idle:
                break
    return latest(reader.records) == expected
