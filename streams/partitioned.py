"""``replay --partitions N``: every stage as N partitions in one process, routed as on Kafka.

The Kafka worker runs one :class:`Engine` per stage (see :func:`streams.registry.stages`) and
each stage partition only sees the events whose key hashes to it. This runner does the same
without a broker, so the effect of partitioning on alerts and on balance can be measured and
tested in seconds:

* an input event goes to the partition of its input topic that ``stormwatch produce`` picks
  (the contract's key, Kafka's murmur2 partitioner), which is its *source*;
* it reaches every stage that takes its type once per stage key, on the partition of that key;
* ticks reach every partition of every input topic;
* events a stage emits go to their stage's partition with ``stage:<name>/<p>`` as source,
  followed by that partition's source time as a tick, one per platform whose time moved (and
  one without a platform when the ticks moved), as the worker's ``forward_time`` does.

Per stage and partition it counts the events handled (emitted ones included) and the CPU
seconds spent, less the garbage collector's pauses (they land on whichever call is running:
on coord_synth they put several seconds on partitions with no events), for ``--stats-out``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import datetime, timezone

from events import TOPIC_BY_TYPE, Alert, AnyEvent, DeadLetter, Tick, decode
from events.decode import route
from events.watermark import moved_times, touched
from streams.engine import Engine
from streams.local import detector_failures
from streams.registry import build_detectors, partition_of, placements, refuser, routes, stage_sources, stages
from streams.runtime import tune_gc
from streams.settings import Settings


class _Collector:
    """CPU seconds the garbage collector has spent since this module was loaded."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


_collector = _Collector()


class PartitionedPipeline:
    """The worker's stages and routing over ``partitions`` partitions, in process."""

    def __init__(self, settings: Settings, partitions: int, on_alert: Callable[[Alert], None],
                 on_deadletter: Callable[[DeadLetter], None]) -> None:
        tune_gc(settings.gc_threshold, settings.gc_middle_passes)  # as LocalPipeline: the same state, the same cost
        self.settings = settings.model_copy(update={"partitions": partitions})
        self.n = partitions
        detectors = build_detectors(self.settings)
        self.routable = refuser(detectors, settings.platform_ids())
        self.groups = stages(detectors)
        self.engines = {name: Engine(members, sources=stage_sources(self.settings, name, self.groups),
                                     lateness=settings.allowed_lateness_s, dedupe_window=settings.dedupe_window_s)
                        for name, members in self.groups.items()}
        self.stage_of = {d.name: name for name, members in self.groups.items() for d in members}
        self.takers, self.fed_by = routes(self.settings, self.groups)
        self.downstream = {name: sorted({self.stage_of[e] for d in members for e in getattr(d, "emits", ())
                                         if e in self.stage_of}) for name, members in self.groups.items()}
        self.on_alert, self.on_deadletter = on_alert, on_deadletter
        self.events = self.deadletters = self.alerts = 0
        self.handled = {name: [0] * partitions for name in self.groups}
        self.cpu_s = {name: [0.0] * partitions for name in self.groups}
        self.latest: dict[str, float] = {}  # platform -> the latest ts of its events taken
        # (stage, partition, platform or None) -> the source time last sent on
        self.forwarded: dict[tuple[str, int, str | None], float] = {}

    def feed(self, raw: bytes, source: str) -> None:
        event = self.routable(decode(raw, source), raw, source)
        if isinstance(event, DeadLetter):
            self.deadletters += 1
            self.on_deadletter(event)
            return
        self.events += 1
        if isinstance(event, Tick):
            self._tick(event.epoch, source, event.platform)
            return
        topic = self.settings.topic(TOPIC_BY_TYPE[event.type])
        routed = route(raw)
        key = routed[1] if routed else None
        origin = f"{topic}/{partition_of(key, self.n) if key else 0}"
        placed = taken = False
        for name, members in self.takers.get(event.type, {}).items():
            engine = self.engines[name]
            for partition, stage_key in placements(members, event, self.n):
                copies, placed = engine.copies, True
                self._stage(name, event, origin, partition, stage_key, source)
                taken = taken or engine.copies == copies
        if taken or not placed:  # a copy every stage dropped moves no time, as in one engine
            self.latest[event.platform] = max(self.latest.get(event.platform, float("-inf")), event.epoch)

    def finish(self) -> None:
        """End of the input: every source reaches each platform's latest event time, so what
        one partition still holds for want of another source's progress is handed over, exactly
        as far as a single source would have got (no deadline after the input's end fires); then
        what a stage spanning platforms kept back for a slower platform (as in one engine)."""
        for platform, latest in self.latest.items():
            self._tick(latest, "end of input", platform)
        for name, engine in self.engines.items():
            alerts = engine.finish()
            for alert in alerts:
                self.alerts += 1
                self.on_alert(alert)
            for letter in detector_failures(engine, "end of input"):
                self.deadletters += 1
                self.on_deadletter(letter)

    def _tick(self, epoch: float, source: str, platform: str | None = None) -> None:
        tick = Tick(type="tick", ts=datetime.fromtimestamp(epoch, timezone.utc), platform=platform)
        for topic, names in sorted(self.fed_by.items()):
            for p_in in range(self.n):
                for name in names:
                    for p in range(self.n):
                        self._stage(name, tick, f"{topic}/{p_in}", p, None, source)

    def _stage(self, name: str, event: AnyEvent, origin: str, partition: int, key: str | None, source: str) -> None:
        engine = self.engines[name]
        collected = _collector.seconds
        started = time.process_time()
        alerts = engine.process(event, source=origin, partition=partition, key=key)
        # the garbage collector's pauses land on whatever call runs: not this partition's work
        self.cpu_s[name][partition] += time.process_time() - started - (_collector.seconds - collected)
        if not isinstance(event, Tick):
            self.handled[name][partition] += 1
        for alert in alerts:
            self.alerts += 1
            self.on_alert(alert)
        for letter in detector_failures(engine, source):
            self.deadletters += 1
            self.on_deadletter(letter)
        self._forward(name, partition, source, event)

    def _forward(self, name: str, partition: int, source: str, event: AnyEvent) -> None:
        """Emitted events to their stages, then this partition's source times downstream (at
        most once per second of event time for events; always for ticks), as the worker does."""
        engine = self.engines[name]
        origin = f"stage:{name}/{partition}"
        for target, emitted in engine.drain_emitted():
            stage = self.stage_of[target]
            detector = next(d for d in self.groups[stage] if d.name == target)
            for k in detector.keys(emitted):
                self._stage(stage, emitted, origin, partition_of(k.encode(), self.n), k, source)
        if not self.downstream[name]:
            return
        wm = engine.watermark(partition)
        for platform, now in moved_times(wm, touched(event), isinstance(event, Tick), self.forwarded, (name, partition)):
            tick = Tick(type="tick", ts=datetime.fromtimestamp(now, timezone.utc), platform=platform)
            for target in self.downstream[name]:
                for p in range(self.n):
                    self._stage(target, tick, origin, p, None, source)

    def stats(self) -> dict:
        """Per stage and partition: events handled and CPU seconds (the ``--stats-out`` file)."""
        return {"partitions": self.n,
                "stages": {name: {"events": self.handled[name], "cpu_s": [round(c, 6) for c in self.cpu_s[name]]}
                           for name in self.groups}}

