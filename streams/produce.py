"""``stormwatch produce``: a JSON Lines file onto the contract's input topics (kafka-python).

Each line goes, unchanged, to the topic of its ``type`` with the contract's key. Field-level
validation is the worker's job (so a bad field is dead-lettered by the worker like any other
bad message); a line that cannot be routed at all (not JSON, no known ``type``) goes to
``deadletter`` from here. Ticks go to every partition of every input topic: that is how event
time moves forward on partitions that have no data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from events import INPUT_TOPICS, TOPIC_BY_TYPE, DeadLetter, decode
from streams.local import read_lines
from streams.settings import Settings

KEY_FIELD = {"post": "post_id", "engagement": "post_id", "report": "report_id", "order": "order_id", "case": "case_id"}


def bootstrap_servers(broker: str) -> list[str]:
    """``kafka://h1:9092;h2:9092`` (Faust's form) to kafka-python's ``["h1:9092", "h2:9092"]``."""
    hosts = broker.replace(";", ",").split(",")
    return [h.strip().removeprefix("kafka://").rstrip("/") for h in hosts if h.strip()]


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


def route(line: bytes) -> tuple[str, bytes | None] | None:
    """(topic, key) for a line, ``("tick", None)`` for ticks, None when it cannot be routed."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    etype = obj.get("type")
    if etype == "tick":
        return "tick", None
    if etype not in TOPIC_BY_TYPE:
        return None
    if etype == "platform_action":
        key = obj.get("order_id") or obj.get("action_id")
    else:
        key = obj.get(KEY_FIELD[etype])
    return TOPIC_BY_TYPE[etype], key.encode() if isinstance(key, str) else None


@dataclass
class ProduceReport:
    sent: int = 0
    ticks: int = 0
    deadletters: int = 0


def produce_file(path: Path, settings: Settings) -> ProduceReport:
    ensure_topics(settings, [settings.topic(t) for t in (*INPUT_TOPICS, "deadletter")])
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers(settings.broker), linger_ms=5, acks="all")
    report = ProduceReport()
    try:
        for number, line in read_lines(path):
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
