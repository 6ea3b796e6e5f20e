"""The one engine core: event time, routing to detectors by key, timers and expiry.

``replay`` and ``demo`` run one :class:`Engine` over every detector with ``dict`` state; the
Kafka worker runs one per stage (one or more detectors with the same key) with Faust tables
as state. Same code, same verdicts.

Event time. Each partition of a stage has a :class:`Watermark`, and in it one time per
platform (a *lane*): the minimum, over the input sources that feed the partition, of the latest
event time each has delivered for that platform, less an allowed lateness. In process there is
one source (the file), so it is simply "the platform's latest ts - lateness". On Kafka the
sources are the input topic partitions, whose events reach a stage partition interleaved in no
fixed order; taking the minimum means a deadline fires only once every source has moved past
it, so the outcome does not depend on that interleaving. Ticks (``type: tick``) move a source's
time forward with no data, for every platform; ``stormwatch produce`` and the worker's
wall-clock ticker send them to every partition. A tick naming a platform moves that platform's
lane only: stages forward each platform's time downstream that way.

One time per platform because platforms do not trust each other: a platform stamping its events
a day ahead must not fire another's deadlines, expire its records or make its on-time events
late. Each lane has its own timers, expiry and buffered events, and a platform's events are
judged late by its own time. A detector whose records mix platforms (``spans_platforms``: the
targets' whole record) goes by the earliest lane instead, so that every platform's events reach
it in one event-time order: a lagging platform delays its alerts but changes none, and at the
end of a finite input (:meth:`Engine.finish`) each platform's events go as far as its own time.

Ordered detectors (``ordered = True``) go one step further: their events wait in a buffer and
are handed over in ``(ts, event_id)`` order once the watermark passes them, so even verdicts
that depend on the order of events are the same on one worker, on three, and in ``replay``.

Duplicates. Kafka delivers at least once, and platforms resend: the same event (same
``platform`` and ``event_id``; on Kafka, for the same key) may reach an engine twice, at once or
much later. The engine remembers which events it took, in one record per second of event time
(``~seen`` keys in the state of the first detector taking that type, one per lane: the second
of the event's ``ts``, or of its platform's event time when the event came behind it) that
expires ``dedupe_window`` after that second, and indexed by identity in memory, so a duplicate within
the window is dropped before any detector sees it whatever ``ts`` it carries (a copy moves no
event time either), and every detector is idempotent without counting distinct things itself. An
event older than its platform's time less the window cannot be told from a duplicate any more; it is
*late*, and goes to the caller as a failure to dead-letter. Cost: a few dict operations per
event in process; on Kafka one changelog write per second of event time per partition per
batch, not one per event (see ``streams.kafka.state``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from events import TOPIC_BY_TYPE, Alert, AnyEvent, Detector, Tick, decode
from events import keys as ids
from events.records import Records, parse
from events.watermark import Watermark

StateFactory = Callable[[str], MutableMapping[str, Any]]


BUFFER = "~buffered\t"  # state keys of ordered stages' buffered events (durable_buffers)


def _buffer_key(partition: int, epoch: float, event_id: str, key: str, etype: str | None = None) -> str:
    """The key of a buffered event's durable record. With ``etype`` (records shared by the
    ordered detectors of a stage): two events of different types with the same id and time
    (hostile or careless ids) are two records; without it, the per-detector format of before."""
    if etype is None:
        return f"{BUFFER}{partition}\t{epoch!r}\t{ids.key(event_id, key)}"
    return f"{BUFFER}{partition}\t{epoch!r}\t{ids.key(etype, event_id, key)}"


STAGE_SOURCE = "stage:"  # sources named ``stage:<name>/<partition>`` are other stages (see streams.registry)

EXPIRY_STEP = 60.0  # expiry is checked per minute of event time: cheap, and exact enough

SEEN = "~seen\t"  # state keys of the events each detector was handed, one record per second of event time
SEEN_BUCKET_S = 1.0


def _seen_key(partition: int, bucket: int, lane: str) -> str:
    """One lane's seen record for one second (lanes expire by their own time: one record each)."""
    return f"{SEEN}{partition}\t{bucket}\t{ids.esc(lane)}"


def _seen_bucket(key: str) -> int:
    """The second of event time a ``~seen`` key (:func:`_seen_key`) holds the events of."""
    return int(key.split("\t", 3)[2])


def _platform_of_identity(identity: str) -> str:
    """The platform an identity (:func:`_identity`) begins with: its first length-prefixed part."""
    size, _, rest = identity.partition(":")
    return rest[:int(size)]


def _identity(event: AnyEvent, key: str) -> str:
    """The (platform, event id, key) an event was handed over as, unambiguous whatever the ids
    hold. An event a stage made (not an input type: a cascades finding) adds its type, so no
    input's id, whatever it holds, can pass for it in a seen-set that also takes inputs."""
    platform, event_id = event.platform, event.event_id  # ids.scoped's form, inline: once per event
    if event.type in TOPIC_BY_TYPE:
        return f"{len(platform)}:{platform}{len(event_id)}:{event_id}{len(key)}:{key}"
    return ids.scoped(platform, event_id, key, event.type)


class LateEvent(Exception):
    """An event too far behind event time to tell from a duplicate (see the module docstring)."""


@dataclass
class _Partition:
    """In-memory indexes of one stage on one partition; rebuilt from state after a restart."""

    timers: list[tuple[float, str]]
    expiry: dict[int, list[str]]  # minute of event time -> keys that may expire then
    # buffered events as (ts, event id, type, key, seq, event): handed over in that order, so
    # events sharing a time and an id (ids are the platforms') go in the same order everywhere;
    # seq (arrival; -1 when read back from the state) only separates redeliveries
    pending: list[tuple[float, str, str, str, int, AnyEvent]] = field(default_factory=list)
    swept: int = -(2**62)  # last minute swept
    restored: int = 0  # buffered events read back from the state when rebuilt (a restart, a takeover)
    # events emitted to this stage by another of the same engine: second of event time ->
    # (platform, event id, type) of each; in memory, as nothing outlives one process there
    emitted: dict[int, set[tuple[str, str, str]]] = field(default_factory=dict)
    # identity -> the second of event time whose ``~seen`` record holds it (this stage's
    # seen-set, indexed): a copy stamped with another ``ts`` is found in its original's second
    seen: dict[str, int] = field(default_factory=dict)

    def schedule(self, key: str, until: float) -> None:
        """Check ``key`` for expiry in the first minute after ``until`` (the ``Expire`` of its records)."""
        if until == math.inf:
            return  # configured never to expire
        minute = int(until // EXPIRY_STEP) + 1
        if minute <= self.swept:
            minute = self.swept + 1  # never into a swept minute
        keys = self.expiry.get(minute)
        if keys is None:
            self.expiry[minute] = [key]
        else:
            keys.append(key)

    def first_emission(self, event: AnyEvent, window: float) -> bool:
        """Whether ``event``, emitted to this stage, is new here: an event emitted more than
        once (by several keys of the emitter) is taken once, as on Kafka, where the receiving
        engine's seen-set drops the repeats key by key. Marks are kept ``window`` seconds of
        event time, as a seen-set's are."""
        bucket = int(event.epoch // SEEN_BUCKET_S)
        identity = (event.platform, event.event_id, event.type)
        marks = self.emitted.get(bucket)
        if marks is None:
            emitted = self.emitted
            while emitted:  # oldest first: buckets come in event time (ordered stages emit in it)
                old = next(iter(emitted))
                if (old + 1) * SEEN_BUCKET_S + window >= event.epoch:
                    break
                del emitted[old]
            emitted[bucket] = {identity}
            return True
        if identity in marks:
            return False
        marks.add(identity)
        return True


@dataclass
class _Context:
    """The :class:`events.Context` for one detector on one partition."""

    state: MutableMapping[str, Any]
    timer_state: MutableMapping[str, Any]
    part: _Partition
    partition: int
    watermark: float = -math.inf
    outbox: list[tuple[str, AnyEvent]] = field(default_factory=list)
    records: Records = field(init=False)

    lane: str = ""  # the platform whose time this context goes by ("" for a stage spanning platforms)

    def __post_init__(self) -> None:
        self.records = Records(self.state, self.part.schedule)  # self.expire, one call less per save

    def set_timer(self, key: str, at: float) -> None:
        self.timer_state[key] = [at, self.partition, self.lane]
        heapq.heappush(self.part.timers, (at, key))

    def expire(self, key: str, until: float) -> None:
        self.part.schedule(key, until)

    def emit(self, detector: str, event: AnyEvent) -> None:
        self.outbox.append((detector, event))


@dataclass
class _Stage:
    detector: Detector
    state: MutableMapping[str, Any]
    timers: MutableMapping[str, Any]
    # partition -> lane -> context: a lane is a platform, whose time its timers, expiry and
    # buffered events go by; a stage spanning platforms also has the lane "" for all of those
    contexts: dict[int, dict[str, _Context]] = field(default_factory=dict)
    carried: dict[tuple[int, str], list] = field(default_factory=dict)  # buffered events kept across a re-index
    buffers: MutableMapping[str, Any] | None = None  # where its durable buffered events live (Engine)
    ordered: bool = field(init=False)  # the detector's ``ordered``, read once per event and stage
    spans: bool = field(init=False)  # the detector's ``spans_platforms`` (see Engine)

    def __post_init__(self) -> None:
        self.ordered = getattr(self.detector, "ordered", False)
        self.spans = getattr(self.detector, "spans_platforms", False)

    def lane(self, platform: str) -> str:
        """The lane an event of ``platform`` is handed over in."""
        return "" if self.spans else platform

    def context(self, partition: int, lane: str, watermark: float) -> _Context:
        lanes = self.contexts.get(partition)
        if lanes is None:
            lanes = self.contexts[partition] = self._rebuild(partition)
        ctx = lanes.get(lane)
        if ctx is None:
            seen = next(iter(lanes.values())).part.seen if lanes else {}
            part = _Partition([], {}, self.carried.pop((partition, lane), []), seen=seen)
            heapq.heapify(part.pending)
            ctx = lanes[lane] = _Context(self.state, self.timers, part, partition, lane=lane)
        ctx.watermark = watermark
        return ctx

    def _lane_of_record(self, key: str) -> str:
        """The platform a record belongs to: its first id (:mod:`events.records`), unless the
        detector says otherwise (``platform_of``)."""
        if self.spans:
            return ""
        own = getattr(self.detector, "platform_of", None)
        if own is not None:
            return own(key)
        found = parse(key)[1]
        return found[0] if found else ""

    def _split_seen(self, key: str, rec: dict, partition: int, bucket: int) -> dict[str, str]:
        """A seen record written before lanes (every platform's ids in one) as one record per
        platform, each expiring by that platform's time; returns lane -> its record's key."""
        by_lane: dict[str, dict] = {}
        for identity in rec["ids"]:
            by_lane.setdefault(_platform_of_identity(identity), {})[identity] = 1
        del self.state[key]
        keys = {}
        for lane, found in by_lane.items():
            keys[lane] = _seen_key(partition, bucket, lane)
            self.state[keys[lane]] = {"until": rec["until"], "ids": found}
        return keys

    def _rebuild(self, partition: int) -> dict[str, _Context]:
        """First use of a partition since start: index the (possibly recovered) state (timers,
        expiry, buffered events), each in its lane."""
        seen: dict[str, int] = {}  # one index for all lanes: an identity names its platform
        parts: dict[str, _Partition] = {}

        def part_of(lane: str) -> _Partition:
            part = parts.get(lane)
            if part is None:
                part = parts[lane] = _Partition([], {}, self.carried.pop((partition, lane), []), seen=seen)
            return part

        for (p, lane) in [k for k in self.carried if k[0] == partition]:
            part_of(lane)
        for key, rec in list(self.timers.items()):
            if rec[1] == partition:  # [at, partition, lane]; before lanes [at, partition]: the key's platform
                lane = rec[2] if len(rec) > 2 else self._lane_of_record(f"timer\t{key}")
                part_of(lane).timers.append((rec[0], key))
        buffered = {(ts, eid, etype, key) for part in parts.values()
                    for ts, eid, etype, key, _seq, _event in part.pending}
        prefix = f"{BUFFER}{partition}\t"
        name = self.detector.name

        def restore(rec: list) -> None:
            routed, raw = rec[0], rec[1]
            event = decode(raw.encode(), "buffer", stage=True)
            entry = (event.epoch, getattr(event, "event_id", ""), event.type, routed)
            if entry not in buffered:
                part = part_of(self.lane(event.platform))
                part.pending.append((*entry, -1, event))
                part.restored += 1

        seen_prefix = f"{SEEN}{partition}\t"
        for key, rec in list(self.state.items()):
            if isinstance(rec, dict) and "until" in rec:
                if key.startswith(SEEN):
                    if not key.startswith(seen_prefix):
                        continue  # another partition's (in process they share a dict): its sweep prunes its index
                    bucket = _seen_bucket(key)
                    seen.update(dict.fromkeys(rec["ids"], bucket))
                    fields = key.split("\t", 3)
                    if len(fields) <= 3:  # one record for every platform, from before lanes: one per lane now
                        for lane, lane_key in self._split_seen(key, rec, partition, bucket).items():
                            part_of(lane).schedule(lane_key, rec["until"])
                        continue
                    lane = ids.parts(fields[3])[0]
                else:
                    lane = self._lane_of_record(key)
                part_of(lane).schedule(key, rec["until"])
            elif key.startswith(prefix) and len(rec) == 2:  # this detector's own, from before records were shared
                restore(rec)
        if self.buffers is not None:  # a buffered event from before a restart or a rebalance
            for key, rec in list(self.buffers.items()):
                if key.startswith(prefix) and len(rec) == 3 and name in rec[2]:
                    restore(rec)
        lanes = {}
        for lane, part in parts.items():
            heapq.heapify(part.timers)
            heapq.heapify(part.pending)
            lanes[lane] = _Context(self.state, self.timers, part, partition, lane=lane)
        return lanes


def _due(part: _Partition, now: float) -> bool:
    """Whether a buffered event or a timer of this partition is due at ``now``."""
    return bool(part.pending and part.pending[0][0] <= now) or bool(part.timers and part.timers[0][0] <= now)


class Engine:
    """Routes validated events to detectors and fires their timers as event time advances."""

    def __init__(
        self,
        detectors: Iterable[Detector],
        state_factory: StateFactory | None = None,
        sources: Iterable[str] = ("input",),
        lateness: float = 0.0,
        durable_buffers: bool = False,
        dedupe_window: float = 3600.0,
        replayed_buffers: bool = False,
    ) -> None:
        """How buffered events (ordered stages) outlive a worker that stops or loses a partition:

        * ``durable_buffers``: each is kept in the stage's state too, until released;
        * ``replayed_buffers`` (the Kafka worker): they are kept nowhere. The caller holds its
          committed offset at the oldest offset still buffered (:meth:`oldest_offset`), so they
          are read again after a restart, and an event counts as seen when it is released, not
          when it arrives (a duplicate that comes while it waits is recognised in memory). It
          saves a state write and a delete for every event that waits past its batch;
        * neither: in one process's lifetime (replay, demo) nothing needs to outlive it.

        ``dedupe_window``: how long (event time, behind the watermark) a duplicate is recognised."""
        make = state_factory or (lambda _name: {})
        self.stages = [_Stage(d, make(d.name), make(f"{d.name}-timers")) for d in detectors]
        # Durable buffered events: one record per (event, key) and partition, naming the ordered
        # detectors still holding it, in the state of the first ordered detector, so an event
        # several detectors wait for is written (and deleted) once, not once per detector. With
        # replayed buffers none is written, but those an older worker wrote are still read back.
        self.buffers = (next((stage.state for stage in self.stages if stage.ordered), None)
                        if durable_buffers or replayed_buffers else None)
        self.write_buffers = durable_buffers
        self.replayed = replayed_buffers
        for stage in self.stages:
            stage.buffers = self.buffers
        self.by_name = {stage.detector.name: stage for stage in self.stages}
        self.spanning = any(stage.spans for stage in self.stages)
        for i, stage in enumerate(self.stages):
            for name in getattr(stage.detector, "emits", ()):
                target = self.by_name.get(name)
                if target is not None and not (self.stages.index(target) > i and target.ordered):
                    raise ValueError(f"{stage.detector.name} emits to {name}: that stage must be ordered and come after it")
                if target is not None and replayed_buffers:
                    raise ValueError(f"{stage.detector.name} emits to {name} in the same engine: with replayed "
                                     "buffers an emitted event would not be read again after a restart")
        if replayed_buffers and not all(stage.ordered for stage in self.stages):
            raise ValueError("replayed buffers need every detector of the engine ordered")
        # With replayed buffers, per partition: buffered entries by source offset and by identity;
        # and per buffered entry (by seq): its identity, offset, the stage holding its seen-set and
        # the event time when it came (its seen record's second, as in process: see _mark_seen).
        self.held: dict[int, tuple[dict[int, int], dict[str, int]]] = {}
        self.held_entries: dict[int, tuple[str, int | None, _Stage, float]] = {}
        # partition -> the oldest offset released since the caller last settled (see settle())
        self.unsettled: dict[int, int] = {}
        # Who takes an event: from the input, the detectors of its type; from another stage
        # (a ``stage:`` source, on Kafka and in ``replay --partitions``), also those that
        # receive that type only when emitted to them (``receives``).
        self.by_type: dict[str, list[_Stage]] = {}
        self.by_handed_type: dict[str, list[_Stage]] = {}
        for stage in self.stages:
            for etype in stage.detector.event_types:
                self.by_type.setdefault(etype, []).append(stage)
            for etype in stage.detector.event_types | getattr(stage.detector, "receives", frozenset()):
                self.by_handed_type.setdefault(etype, []).append(stage)
        self._handed: list[tuple[_Stage, _Context]] = []  # stages emitted to during one process()
        self._keys_event: AnyEvent | None = None  # see _keys_once()
        self._keys_by: dict[str, tuple[str, ...]] = {}
        self.sources = tuple(sources)
        self.lateness = lateness
        self.dedupe_window = dedupe_window
        self.watermarks: dict[int, Watermark] = {}
        self._seq = 0
        # Detector failures, for the caller to dead-letter: (detector, error, event or None).
        self.failures: list[tuple[str, Exception, AnyEvent | None]] = []
        # Events emitted to detectors this engine does not run (on Kafka: another stage's topic).
        self.emitted: list[tuple[str, AnyEvent]] = []
        self.copies = 0  # events dropped as copies of one taken before (the evidence log skips them)

    def open(self, partition: int) -> None:
        """Index ``partition``'s state now (timers, expiry, buffered events) rather than at its
        first use: the worker does it when it takes a partition, so what it read back can be logged."""
        for stage in self.stages:
            if partition not in stage.contexts:
                stage.contexts[partition] = stage._rebuild(partition)
            for ctx in stage.contexts[partition].values():
                ctx.watermark = self._time(stage, partition, ctx.lane)

    def _time(self, stage: _Stage, partition: int, lane: str) -> float:
        """The event time a lane of ``stage`` goes by: its platform's, or for the lane of a
        stage spanning platforms, the earliest platform's."""
        wm = self.watermark(partition)
        return wm.least() if lane == "" and stage.spans else wm.of(lane)

    def held_from(self, partition: int = 0) -> float:
        """The earliest event time a stage spanning platforms still holds on ``partition``
        (buffered events, timers; ``inf``: none). It waits for the slowest platform, so no
        platform's alerts for its later events have left yet: the time a stage tells the
        evidence log it has delivered goes no further (a platform's log must not record its
        later events before the alert that cites earlier ones)."""
        front = math.inf
        if self.spanning:
            for stage in self.stages:
                ctx = stage.contexts.get(partition, {}).get("") if stage.spans else None
                if ctx is not None:
                    part = ctx.part
                    if part.pending:
                        front = min(front, part.pending[0][0])
                    if part.timers:
                        front = min(front, part.timers[0][0])
        return front

    def buffered(self, partition: int) -> tuple[int, int]:
        """(events buffered now, of which read back from the state) over the ordered stages of
        ``partition``: for the worker's gauge and its restart log."""
        parts = [ctx.part for s in self.stages if s.ordered for ctx in s.contexts.get(partition, {}).values()]
        return sum(len(p.pending) for p in parts), sum(p.restored for p in parts)

    def watermark(self, partition: int = 0) -> Watermark:
        wm = self.watermarks.get(partition)
        if wm is None:
            wm = self.watermarks[partition] = Watermark(self.sources, self.lateness)
        return wm

    def reset(self) -> None:
        """Rebuild the timer and expiry indexes from the tables on next use (after a rebalance:
        another worker may have changed them meanwhile).

        Watermarks are kept: a watermark only records what the sources delivered. Buffered
        events are kept in memory only when they are neither durable nor replayed: their offsets
        are committed, so no other worker will see them. Durable ones come back from the state,
        replayed ones from the topic (the partition's next owner reads from the held commit); a
        copy kept here would be stale once another worker has released them (the partition back
        here later would release them twice).
        """
        for stage in self.stages:
            if self.buffers is None:
                for partition, lanes in stage.contexts.items():
                    for lane, ctx in lanes.items():
                        stage.carried[(partition, lane)] = ctx.part.pending
            stage.contexts.clear()
        self.held.clear()
        self.held_entries.clear()
        self.unsettled.clear()

    def process(
        self, event: AnyEvent, source: str | None = None, partition: int = 0, key: str | None = None,
        offset: int | None = None,
    ) -> list[Alert]:
        """Handle one event: route it (or buffer it, for ordered stages), then advance time.

        ``key`` restricts routing to that one key: on Kafka a stage message was already routed
        to the partition of one of the event's keys (a detector without that key skips it).
        ``offset``: where it was read (replayed buffers: see :meth:`oldest_offset`).
        """
        wm = self.watermarks.get(partition) or self.watermark(partition)
        tick = isinstance(event, Tick)
        platform = event.platform
        if not tick:
            handed = source is not None and source.startswith(STAGE_SOURCE)
            takers = (self.by_handed_type if handed else self.by_type).get(event.type, ())
            if takers:
                first = takers[0]
                identity = _identity(event, key or "")
                # the first taker keeps the seen-set, in the event's platform's lane (a stage
                # spanning platforms too: each platform's records expire by its own time)
                lanes = first.contexts.get(partition)
                seen_in = lanes.get(platform) if lanes is not None else None
                if seen_in is None:
                    seen_in = first.context(partition, platform, wm.of(platform))
                copy = identity in seen_in.part.seen
                if self.replayed:  # seen once released (_released); until then, held in memory
                    offsets, holding = self.held.setdefault(partition, ({}, {}))
                    copy = copy or identity in holding
                if copy:
                    self.copies += 1
                    return []  # a copy changes nothing, not even event time (its ts may be another)
        moved = wm.observe(source or self.sources[0], event.epoch, platform)
        alerts: list[Alert] = []
        if moved:
            alerts.extend(self._advance(partition, moved))
        if tick:
            return alerts
        now = wm.of(platform)
        if event.epoch < now - self.dedupe_window:
            self.failures.append(("engine", LateEvent(
                f"ts: {event.ts.isoformat()} is more than {self.dedupe_window:g} s behind event time "
                "(the duplicate window): too late to tell from a duplicate"), event))
            return alerts
        if not takers:
            return alerts
        if not self.replayed and not self._mark_seen(first, seen_in, event, identity, now):
            return alerts  # (replayed: marked seen once released, see _released)
        routed: list[tuple[_Stage, _Context, tuple[str, ...], float]] = []
        for stage in takers:
            if key is not None:  # already routed to one key's partition (several detectors may share it)
                keys = (key,) if key in self._keys_once(stage, event) else ()
            else:
                keys = self._keys(stage, event)
            # the context first: opening it reads the durable buffers back, which _hold writes to
            if stage.spans:
                at = wm.least()
                ctx = stage.context(partition, "", at)
            else:
                at = now
                lanes = stage.contexts.get(partition)
                ctx = lanes.get(platform) if lanes is not None else None
                if ctx is None:
                    ctx = stage.context(partition, platform, now)
                else:
                    ctx.watermark = now
            routed.append((stage, ctx, keys, at))
        if self.write_buffers:
            self._hold(partition, event, [(stage.detector.name, keys) for stage, _ctx, keys, _at in routed
                                          if stage.ordered])
        for stage, ctx, keys, at in routed:
            if stage.ordered:
                for k in keys:
                    seq = self._buffer(ctx, event, k)
                    if self.replayed:
                        self.held_entries[seq] = (identity, offset, first, now)
                        holding[identity] = holding.get(identity, 0) + 1
                        if offset is not None:
                            offsets[offset] = offsets.get(offset, 0) + 1
            else:
                for k in keys:
                    alerts.extend(self._call(stage, event, k, ctx))
            if _due(ctx.part, at):  # and timers the detector set already due
                alerts.extend(self._release(stage, ctx, at))
        if self.replayed and identity not in holding:  # no detector had a key for it: nothing waits
            self._mark_seen(first, seen_in, event, identity, now)
        while self._handed:  # stages that events were emitted to, which may take none of this type
            stage, ctx = self._handed.pop(0)
            at = self._time(stage, partition, ctx.lane)
            if _due(ctx.part, at):
                alerts.extend(self._release(stage, ctx, at))
        return alerts

    @staticmethod
    def _keys(stage: _Stage, event: AnyEvent) -> tuple[str, ...]:
        """The detector's keys for ``event``, each once (as on Kafka, where a key's seen-set
        drops a second copy)."""
        found = stage.detector.keys(event)
        return tuple(dict.fromkeys(found) if len(found) > 1 else found)

    def _keys_once(self, stage: _Stage, event: AnyEvent) -> tuple[str, ...]:
        """:meth:`_keys`, remembered for the last event: a stage record hands one event over
        once per key it was bound for (a co-action, once per partner)."""
        if event is not self._keys_event:
            self._keys_event, self._keys_by = event, {}
        keys = self._keys_by.get(stage.detector.name)
        if keys is None:
            keys = self._keys_by[stage.detector.name] = self._keys(stage, event)
        return keys

    def _released(self, seq: int, event: AnyEvent, partition: int) -> None:
        """A buffered entry handed over (replayed buffers): seen from now on, no longer held."""
        identity, offset, first, came = self.held_entries.pop(seq)
        offsets, holding = self.held[partition]
        lane = event.platform  # seen records go by the platform's own time (see process)
        self._mark_seen(first, first.context(partition, lane, self.watermark(partition).of(lane)), event, identity, came)
        if holding[identity] == 1:
            del holding[identity]
        else:
            holding[identity] -= 1
        if offset is not None:
            if offsets[offset] == 1:
                del offsets[offset]
            else:
                offsets[offset] -= 1
            self.unsettled[partition] = min(self.unsettled.get(partition, offset), offset)

    def oldest_offset(self, partition: int) -> int | None:
        """The oldest source offset of an event still buffered on ``partition``, or released
        since the last :meth:`settle` (replayed buffers): the caller commits no further, so a
        restart reads it again. An event released in a batch whose state never reached the
        store (the worker crashed or stopped first) is read again too: its release, its seen
        mark and what it changed were lost with that state."""
        held = self.held.get(partition)
        oldest = min(held[0]) if held and held[0] else None
        released = self.unsettled.get(partition)
        if released is None:
            return oldest
        return released if oldest is None else min(oldest, released)

    def settle(self) -> dict[int, int]:
        """The state of everything released so far is stored, or the caller holds the commits
        itself until it is (the worker, after a batch's state was sent): this engine no longer
        holds them. Returns per partition the oldest offset it held."""
        settled, self.unsettled = self.unsettled, {}
        return settled

    def _mark_seen(self, stage: _Stage, ctx: _Context, event: AnyEvent, identity: str, came: float) -> bool:
        """Remember ``identity``; False when it was remembered already, whatever the ``ts`` of
        either copy (the partition's index of its seen records). Every detector that takes an
        event takes it in the same call, so one record serves them all: it lives in the state of
        the first of them (``stage``)."""
        seen = ctx.part.seen
        if identity in seen:
            return False
        # Remembered a window after it came (``came``: the platform's event time then): an event
        # taken late (behind event time, within the window) filed under its own ts would be
        # forgotten sooner, and a copy counted again. Not the time it is marked: with replayed
        # buffers that is its release, later than replay's arrival, and the two would differ.
        bucket = int(max(event.epoch, came) // SEEN_BUCKET_S)
        skey = _seen_key(ctx.partition, bucket, ctx.lane)
        record = stage.state.get(skey)
        if record is None:
            record = {"until": (bucket + 1) * SEEN_BUCKET_S + self.dedupe_window, "ids": {}}
            ctx.expire(skey, record["until"])
        record["ids"][identity] = 1
        seen[identity] = bucket
        stage.state[skey] = record
        return True

    def _buffer(self, ctx: _Context, event: AnyEvent, key: str) -> int:
        """Into the partition's heap; its durable record is the caller's (:meth:`_hold`)."""
        self._seq += 1
        heapq.heappush(ctx.part.pending, (event.epoch, getattr(event, "event_id", ""), event.type, key, self._seq, event))
        return self._seq

    def _hold(self, partition: int, event: AnyEvent, holders: list[tuple[str, tuple[str, ...]]]) -> None:
        """The durable record of a buffered event: ``[key, event json, [detectors holding it]]``
        per key; the event is serialised once whatever the number of detectors."""
        by_key: dict[str, list[str]] = {}
        for name, keys in holders:
            for k in keys:
                by_key.setdefault(k, []).append(name)
        if not by_key:
            return
        raw = event.model_dump_json()
        event_id = getattr(event, "event_id", "")
        for k, names in by_key.items():
            self.buffers[_buffer_key(partition, event.epoch, event_id, k, event.type)] = [k, raw, names]

    def _unhold(self, stage: _Stage, partition: int, event: AnyEvent, event_id: str, key: str, restored: bool) -> None:
        """``stage`` released a buffered event: its name leaves the record, which goes with the
        last. An event read back from a record of the older, per-detector format (``restored``)
        has that record deleted instead."""
        bkey = _buffer_key(partition, event.epoch, event_id, key, event.type)
        rec = self.buffers.get(bkey)
        name = stage.detector.name
        if rec is not None and len(rec) == 3 and name in rec[2]:
            names = [n for n in rec[2] if n != name]
            if names:
                self.buffers[bkey] = [rec[0], rec[1], names]
            else:
                del self.buffers[bkey]
        elif restored:
            old = _buffer_key(partition, event.epoch, event_id, key)
            if len(stage.state.get(old) or ()) == 2:
                del stage.state[old]

    def _deliver_emitted(self, ctx: _Context) -> None:
        """Events a detector emitted: buffered in the named stage if it runs here (it comes later
        in the stage order, so the same pass releases them), else kept for the caller to send."""
        for name, event in ctx.outbox:
            target = self.by_name.get(name)
            if target is None:
                self.emitted.append((name, event))
                continue
            lane = target.lane(event.platform)
            target_ctx = target.context(ctx.partition, lane, self._time(target, ctx.partition, lane))
            # every key of the receiver takes it in this one call, so one mark serves them all
            if not target_ctx.part.first_emission(event, self.dedupe_window):
                continue
            keys = self._keys(target, event)
            if not keys:
                continue
            if not self._handed or self._handed[-1][1] is not target_ctx:
                self._handed.append((target, target_ctx))
            if self.write_buffers:
                self._hold(ctx.partition, event, [(name, keys)])
            for k in keys:
                self._buffer(target_ctx, event, k)
        ctx.outbox.clear()

    def drain_emitted(self) -> list[tuple[str, AnyEvent]]:
        """(detector, event) for events bound for stages run elsewhere."""
        emitted, self.emitted = self.emitted, []
        return emitted

    def _call(self, stage: _Stage, event: AnyEvent | None, key: str, ctx: _Context) -> list[Alert]:
        """One detector call; a failure is recorded, never allowed to stop the stream."""
        try:
            if event is None:
                alerts = stage.detector.on_timer(key, ctx)
            else:
                alerts = stage.detector.on_event(event, key, ctx)
            for alert in alerts:
                if alert.kind not in stage.detector.raises:
                    raise ValueError(f"raised {alert.kind}, which it does not declare in `raises`")
            return alerts
        except Exception as err:  # a detector bug must not lose the rest of the stream
            self.failures.append((stage.detector.name, err, event))
            return []
        finally:
            if ctx.outbox:
                self._deliver_emitted(ctx)

    def drain_failures(self) -> list[tuple[str, Exception, AnyEvent | None]]:
        failures, self.failures = self.failures, []
        return failures

    def _advance(self, partition: int, moved: list[str | None]) -> list[Alert]:
        """Hand over what the lanes that ``moved`` now pass (``None``: the floor, for lanes
        read back from the state whose platform has sent nothing here since), stage by stage:
        what one stage emits to a later one is released in the same pass."""
        alerts: list[Alert] = []
        wm = self.watermarks[partition]
        floor = None in moved
        times = [(lane, wm.values[lane]) for lane in moved if lane is not None]  # usually one: an event's platform
        times = [(lane, now, math.floor(now / EXPIRY_STEP) if now > -math.inf else None) for lane, now in times]
        least = wm.least() if self.spanning else -math.inf
        for stage in self.stages:
            lanes = stage.contexts.get(partition)
            if lanes is None:
                lanes = stage.contexts[partition] = stage._rebuild(partition)
            for lane, now, minute in times:
                ctx = lanes.get(lane)
                if ctx is None:
                    continue
                ctx.watermark = now
                part = ctx.part  # _due, inline: this runs for every stage at every advance
                if part.pending and part.pending[0][0] <= now or part.timers and part.timers[0][0] <= now:
                    alerts.extend(self._release(stage, ctx, now))  # most advances release nothing: no call
                if minute is not None and minute > part.swept:
                    self._expire(stage, ctx, now)
            if floor or stage.spans:
                for lane, ctx in list(lanes.items()):
                    if lane == "" and stage.spans:
                        now = least
                        if now > -math.inf and math.floor(now / EXPIRY_STEP) < ctx.part.swept:
                            # A platform first seen here behind the others pulled the earliest
                            # time back: what it saves must expire by that time, not be filed
                            # after minutes swept by a platform that ran ahead.
                            ctx.part.swept = math.floor(now / EXPIRY_STEP)
                    elif floor and lane not in wm.values:
                        now = wm.floor
                    else:
                        continue
                    ctx.watermark = now
                    if _due(ctx.part, now):
                        alerts.extend(self._release(stage, ctx, now))
                    if now > -math.inf and math.floor(now / EXPIRY_STEP) > ctx.part.swept:
                        self._expire(stage, ctx, now)
        return alerts

    def finish(self) -> list[Alert]:
        """End of a finite input (replay): a stage spanning platforms hands over what each
        platform's own time has passed, as it would with that platform alone; what waited only
        for a slower platform would otherwise never leave. Buffered events only: a spanning
        detector's timers and emissions are not handed over here (the targets set neither)."""
        alerts: list[Alert] = []
        for stage in self.stages:
            if not stage.spans:
                continue
            for partition, lanes in stage.contexts.items():
                ctx = lanes.get("")
                if ctx is None or not ctx.part.pending:
                    continue
                wm = self.watermarks[partition]
                pending, kept = sorted(ctx.part.pending), []
                ctx.part.pending = []
                for entry in pending:
                    ts, event = entry[0], entry[5]
                    if ts > wm.of(event.platform):
                        kept.append(entry)
                        continue
                    if ts >= (ctx.part.swept + 1) * EXPIRY_STEP - 1e-3:
                        self._expire(stage, ctx, ts)
                    alerts.extend(self._hand_over(stage, ctx, entry))
                ctx.part.pending = kept + ctx.part.pending  # kept is sorted: a heap; emitted ones after it
                heapq.heapify(ctx.part.pending)
        return alerts

    def _release(self, stage: _Stage, ctx: _Context, now: float) -> list[Alert]:
        """Buffered events (ordered stages) and due timers up to ``now``, interleaved in event time.

        An event at exactly a timer's time goes first: an action at the deadline is on time.
        """
        alerts: list[Alert] = []
        part = ctx.part
        pending, timers = part.pending, part.timers
        while True:
            next_event = pending[0][0] if pending else math.inf
            next_timer = timers[0][0] if timers else math.inf
            first = next_event if next_event <= next_timer else next_timer
            if first > now:
                return alerts
            # records expire by the time of what is handed over, not by how far the watermark
            # jumped: one step over an hour (a source that was silent) or sixty of a minute give
            # the detector the same state
            if first >= (part.swept + 1) * EXPIRY_STEP - 1e-3:  # maybe a minute not yet swept: _expire decides
                self._expire(stage, ctx, first)
            if next_event <= next_timer:
                alerts.extend(self._hand_over(stage, ctx, heapq.heappop(pending)))
            else:
                alerts.extend(self._fire_one(stage, ctx))

    def _hand_over(self, stage: _Stage, ctx: _Context, entry: tuple) -> list[Alert]:
        """One buffered event, popped from its heap, to the detector: its durable record and its
        hold (replayed buffers) let go first."""
        _ts, event_id, _type, key, seq, event = entry
        if self.buffers is not None and (self.write_buffers or seq < 0):
            self._unhold(stage, ctx.partition, event, event_id, key, restored=seq < 0)
        if self.held_entries and seq in self.held_entries:
            self._released(seq, event, ctx.partition)
        return self._call(stage, event, key, ctx)

    def _fire_one(self, stage: _Stage, ctx: _Context) -> list[Alert]:
        at, key = heapq.heappop(ctx.part.timers)
        current = stage.timers.get(key)
        if current is None or current[0] != at:
            return []  # cancelled or replaced
        del stage.timers[key]
        return self._call(stage, None, key, ctx)

    @staticmethod
    def _expire(stage: _Stage, ctx: _Context, now: float) -> None:
        """Delete records whose ``until`` passed, a minute of event time at a time."""
        part = ctx.part
        minute = math.floor(now / EXPIRY_STEP)
        if minute <= part.swept or now == -math.inf:
            return
        if minute - part.swept <= len(part.expiry):  # the usual step: the minutes since the last sweep
            due = [m for m in range(part.swept + 1, minute + 1) if m in part.expiry]
        else:  # a jump in time (or the first sweep): look at what is scheduled instead
            due = sorted(m for m in part.expiry if m <= minute)
        part.swept = minute
        state = stage.state
        for m in due:
            for key in part.expiry.pop(m):
                record = state.get(key)
                if not isinstance(record, dict):
                    continue  # gone already (another partition's sweep, in process)
                until = record.get("until", -math.inf)
                if until > now:
                    part.schedule(key, until)  # moved later since scheduled
                else:
                    del state[key]
                    if key.startswith(SEEN):  # its events leave the index (a later copy is new, or late)
                        seen, bucket = part.seen, _seen_bucket(key)
                        for identity in record["ids"]:
                            if seen.get(identity) == bucket:
                                del seen[identity]
