"""Which detectors run. The one place a new detector is switched on."""

from __future__ import annotations

from collections.abc import Callable

from murmurhash2 import murmurhash2 as _murmurhash2

from detectors.orders import ledger_detectors
from detectors.cascades import cascade_detectors
from detectors.targets import PostTargets, Targets
from detectors.water_army import water_army_detectors
from events import ALERT_KINDS, TOPIC_BY_TYPE, AnyEvent, DeadLetter, Detector, raw_text
from streams.settings import Settings


def build_detectors(settings: Settings) -> list[Detector]:
    detectors: list[Detector] = [
        *ledger_detectors(settings.ledger, settings.law),  # the watch, then the ledger it hands activity to
        *water_army_detectors(settings.water_army),  # accounts, objects, pairs, then the campaigns
        *cascade_detectors(settings.cascades, settings.law),  # the watch, then the author-keyed raiser
        PostTargets(settings.targets),  # before Targets: it hands reports on to it
        Targets(settings.targets),
    ]
    names = [d.name for d in detectors]
    if len(names) != len(set(names)):
        raise ValueError(f"detector names must be unique: {names}")
    check_kinds(detectors)
    wanted = [n.strip() for n in settings.detectors.split(",") if n.strip()]
    if not wanted:
        return detectors
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"STORMWATCH_DETECTORS names unknown detectors {unknown}; known: {names}")
    # a detector that only feeds another (it raises nothing) comes with the one it feeds, and
    # so on up the chain (the water army's accounts feed its objects, which feed its pairs)
    chosen_names = set(wanted)
    while True:
        feeders = {d.name for d in detectors if not d.raises and set(getattr(d, "emits", ())) & chosen_names}
        if feeders <= chosen_names:
            break
        chosen_names |= feeders
    chosen = [d for d in detectors if d.name in chosen_names]
    names = {d.name for d in chosen}
    for d in chosen:
        missing = sorted(set(getattr(d, "emits", ())) - names)
        if missing:  # its events would go nowhere (in process, pile up)
            raise ValueError(f"STORMWATCH_DETECTORS: {d.name} hands events to {missing}, which is not chosen; "
                             f"choose {missing[0]} (it brings {d.name})")
    return chosen


def refuser(detectors: list[Detector], platforms: frozenset[str] = frozenset()
            ) -> Callable[[AnyEvent | DeadLetter, bytes, str], AnyEvent | DeadLetter]:
    """What every entry point applies after ``decode``: a valid event naming a platform not in
    ``platforms`` (when given: ``STORMWATCH_PLATFORMS``), or one a detector cannot route (its
    ``refuse`` gives the error, naming the field), becomes an ``invalid_field`` dead letter;
    anything else passes unchanged. Built once, with only the detectors that refuse anything."""
    refusing = [d.refuse for d in detectors if hasattr(d, "refuse")]
    if platforms:
        known = ", ".join(sorted(platforms))
        refusing.insert(0, lambda event: None if event.platform is None or event.platform in platforms else (
            f"{event.type}.platform: {event.platform[:256]!r} is not a platform this deployment takes "
            f"(STORMWATCH_PLATFORMS: {known[:1024]})"))

    def check(event: AnyEvent | DeadLetter, raw: bytes, source: str) -> AnyEvent | DeadLetter:
        if isinstance(event, DeadLetter):
            return event
        for refuse in refusing:
            reason = refuse(event)
            if reason is not None:
                return DeadLetter(reason, "invalid_field", raw_text(raw), source)
        return event

    return check


def check_kinds(detectors: list[Detector]) -> None:
    """Every alert kind of the contract is raised by exactly one detector, and no detector
    declares a kind the contract lacks: a kind names the one file where it is decided."""
    owners: dict[str, list[str]] = {}
    for d in detectors:
        for kind in d.raises:
            owners.setdefault(kind, []).append(d.name)
    unknown = sorted(set(owners) - set(ALERT_KINDS))
    wrong = {kind: owners.get(kind, []) for kind in ALERT_KINDS if len(owners.get(kind, [])) != 1}
    if unknown or wrong:
        raise ValueError(f"alert kinds and detectors do not match: not in the contract {unknown}, "
                         f"not raised by exactly one detector {wrong}")


def stages(detectors: list[Detector]) -> dict[str, list[Detector]]:
    """The worker's stages: detectors grouped by their ``stage`` (default: their name), in
    registry order. A stage is one Kafka topic and one engine, so an event keyed the same way
    for several detectors crosses Kafka once. A detector that receives ``ctx.emit`` events runs
    in a stage of its own: an emitted event is meant for that detector alone."""
    groups: dict[str, list[Detector]] = {}
    for d in detectors:
        groups.setdefault(getattr(d, "stage", d.name), []).append(d)
    emitted_to = {name for d in detectors for name in getattr(d, "emits", ())}
    for name, members in groups.items():
        shared = emitted_to & {d.name for d in members}
        if shared and len(members) != 1:
            raise ValueError(f"stage {name}: {sorted(shared)} receive emitted events, run alone")
    return groups


def stage_sources(settings: Settings, stage: str, groups: dict[str, list[Detector]]) -> list[str]:
    """The sources whose time a stage partition waits for: input ``topic/partition``s, and the
    partitions of stages that emit events to it (``stage:<name>/<partition>``)."""
    names = {d.name for d in groups[stage]}
    inputs = [f"{topic}/{p}" for topic in input_topics_of(settings, groups[stage]) for p in range(settings.partitions)]
    upstream = [f"stage:{other}/{p}" for other, members in groups.items()
                if any(names & set(getattr(d, "emits", ())) for d in members) for p in range(settings.partitions)]
    return inputs + upstream


def input_topics_of(settings: Settings, detectors: list[Detector]) -> list[str]:
    return sorted({settings.topic(TOPIC_BY_TYPE[t]) for d in detectors for t in d.event_types})


def routes(settings: Settings, groups: dict[str, list[Detector]]) -> tuple[dict, dict]:
    """How input reaches the stages, for the worker's ingest and ``replay --partitions``:
    event type -> stage -> its detectors taking that type, and input topic -> the stages it
    feeds (whose time its ticks move forward)."""
    takers: dict[str, dict[str, list[Detector]]] = {}
    fed_by: dict[str, list[str]] = {}
    for name, members in groups.items():
        for d in members:
            for etype in d.event_types:
                takers.setdefault(etype, {}).setdefault(name, []).append(d)
        for topic in input_topics_of(settings, members):
            fed_by.setdefault(topic, []).append(name)
    return takers, fed_by


def placements(detectors: list[Detector], event: AnyEvent, partitions: int) -> list[tuple[int, str]]:
    """Where an event goes in one stage: ``(partition, key)`` once per key of its detectors, on
    that key's partition, or on every partition for a type a detector ``broadcast``s. The one
    routing rule of the worker's ingest and of ``replay --partitions``."""
    placed: set[tuple[int, str]] = set()
    for d in detectors:
        everywhere = event.type in getattr(d, "broadcast", ())
        for key in d.keys(event):
            if everywhere:
                placed.update((p, key) for p in range(partitions))
            else:
                placed.add((partition_of(key.encode(), partitions), key))
    return sorted(placed, key=lambda pk: (pk[1], pk[0]))


KAFKA_SEED = 0x9747B28C  # the seed of Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (unsigned): the same values as kafka-python's and aiokafka's, held to them
    by a test; Kafka's is plain 32-bit MurmurHash2 with :data:`KAFKA_SEED`. Compiled (the
    ``murmurhash2`` package) it costs 0.3 µs a key, where Python's took 2.7-4.6 µs (the
    clients' pure-Python one 4.8): about 7 keys per event, 3% of a worker's samples even with a
    cache that missed three keys in four (session 25, py-spy)."""
    return _murmurhash2(data if type(data) is bytes else bytes(data), KAFKA_SEED)  # it takes bytes alone, the clients any buffer


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a key: Kafka's default partitioner (kafka-python and aiokafka alike),
    so the worker's routing, ``replay --partitions`` and a platform's producer agree."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
