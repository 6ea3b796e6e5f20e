"""``stormwatch produce``: a JSON Lines file onto the contract's input topics (kafka-python).

Each line goes, unchanged, to the topic of its ``type`` with the contract's key. Field-level
validation is the worker's job (so a bad field is dead-lettered by the worker like any other
bad message); a line that cannot be routed at all (not JSON, no known ``type``) goes to
``deadletter`` from here. Ticks go to every partition of every input topic: that is how event
time moves forward on partitions that have no data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from events import INPUT_TOPICS, DeadLetter, decode
from events.decode import route
from streams.local import read_lines
from streams.settings import Settings, bootstrap_servers

def ensure_topics(settings: Settings, names: list[str]) -> None:
    """Create missing topics with the configured partition count (a broker default could differ)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(settings.broker))
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, settings.partitions, settings.replication) for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


@dataclass
class ProduceReport:
    sent: int = 0
    ticks: int = 0
    deadletters: int = 0


def produce_file(path: Path, settings: Settings, on_progress: Callable[[int], None] | None = None,
                 every: int = 2000, report: ProduceReport | None = None) -> ProduceReport:
    """Send the file, counting into ``report``; ``on_progress(lines_done)`` is called every
    ``every`` lines, for a progress bar that shows the counts so far."""
    ensure_topics(settings, [settings.topic(t) for t in (*INPUT_TOPICS, "deadletter")])
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers(settings.broker), linger_ms=5, acks="all")
    report = ProduceReport() if report is None else report
    try:
        for done, (number, line) in enumerate(read_lines(path), 1):
            if on_progress is not None and done % every == 0:
                on_progress(done)
            target = route(line)
            if target is None:
                letter = decode(line, f"{path.name}:{number}")
                if not isinstance(letter, DeadLetter):  # pragma: no cover - route and decode agree
                    letter = DeadLetter("cannot route", "unroutable", line.decode("utf-8", "replace"), path.name)
                producer.send(settings.topic("deadletter"), orjson.dumps(letter.to_record()))
                report.deadletters += 1
            elif target[0] == "tick":
                for topic in INPUT_TOPICS:
                    for p in range(settings.partitions):
                        producer.send(settings.topic(topic), line, partition=p)
                report.ticks += 1
            else:
                producer.send(settings.topic(target[0]), line, key=target[1])
                report.sent += 1
        producer.flush()
    finally:
        producer.close()
    return report
