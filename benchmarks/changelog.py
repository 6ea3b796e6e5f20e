"""Changelog messages per input event on Kafka: what the worker's state costs the broker.

One worker (4 partitions, memory store), the simulator's stream produced with
``stormwatch produce``; once the alerts stop changing, the end offsets of every changelog
topic of the app are added up. The duplicate check (``streams/engine.py``) adds one record
per second of event time per partition, written once per batch: this shows what that costs.

Run: ``python -m benchmarks.changelog [--minutes 10 --per-s 15]`` (starts its own broker).
To measure another checkout, put it first on ``PYTHONPATH``: the worker and ``produce`` run
as subprocesses of the ``stormwatch`` next to this interpreter and import from there.
Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer  # noqa: E402

from commands.simulator import SimConfig, simulate_lines  # noqa: E402
from tests.support.kafka_broker import KafkaBroker  # noqa: E402
from tests.support.worker import Worker  # noqa: E402


def changelog_messages(broker: KafkaBroker, app_id: str) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        topics = [t for t in consumer.topics() if t.startswith(app_id) and t.endswith("-changelog")]
        counts = {}
        for topic in topics:
            from kafka import TopicPartition

            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            counts[topic] = sum(consumer.end_offsets(parts).values())
        return counts
    finally:
        consumer.close()


def by_kind(broker: KafkaBroker, topics: list[str]) -> dict[tuple[str, str], int]:
    """Messages per (changelog, record kind): the first part of each key (``~buffered``, ``~seen``,
    ``pair``, ``sig``...), a delete (tombstone) counted with its key's kind."""
    from collections import Counter

    import orjson

    counts: Counter = Counter()
    consumer = KafkaConsumer(*topics, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, enable_auto_commit=False)
    try:
        for message in consumer:
            try:
                key = orjson.loads(message.key)
            except Exception:  # noqa: BLE001 - not a JSON key: count it as such
                key = "?"
            kind = str(key).split("\t", 1)[0] if isinstance(key, str) else type(key).__name__
            counts[(message.topic, kind)] += 1
    finally:
        consumer.close()
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--per-s", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    bin_ = str(Path(sys.executable).with_name("stormwatch"))
    with tempfile.TemporaryDirectory(prefix="sw-changelog-") as tmp:
        workdir = Path(tmp)
        src = workdir / "events.jsonl"
        lines = list(simulate_lines(SimConfig(minutes=args.minutes, organic_per_s=args.per_s)))
        src.write_bytes(b"\n".join(lines) + b"\n")
        broker = KafkaBroker().start()
        try:
            worker = Worker(broker, bin_, workdir, partitions=4).start()
            try:
                started = time.monotonic()
                worker.produce(src)
                last, stable_since = None, time.monotonic()
                while time.monotonic() - started < args.timeout:
                    counts = changelog_messages(broker, worker.app_id)
                    total = sum(counts.values())
                    if total != last:
                        last, stable_since = total, time.monotonic()
                    elif time.monotonic() - stable_since > 15:
                        break
                    time.sleep(2)
                drained = stable_since - started
                kinds = by_kind(broker, [t for t, n in counts.items() if n])
            finally:
                worker.stop()
        finally:
            broker.stop()
    events = len(lines)
    print(f"{events:,} input events (ticks included), one worker, 4 partitions; drained in about {drained:.0f} s")
    for topic, n in sorted(counts.items()):
        print(f"  {topic.removeprefix(worker.app_id + '-'):40} {n:>9,}  {n / events:.3f} per event")
    print(f"changelog messages: {total:,} = {total / events:.3f} per input event")
    print("by record kind (the first part of the key), per input event:")
    for (topic, kind), n in sorted(kinds.items(), key=lambda item: -item[1]):
        if n / events >= 0.005:
            print(f"  {topic.removeprefix(worker.app_id + '-'):40} {kind:12} {n / events:.3f}")


if __name__ == "__main__":
    main()
