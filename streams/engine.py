"""The one engine core: event time, routing to detectors by key, and timers.

``replay`` and ``demo`` run one :class:`Engine` over every detector with ``dict`` state; the
Kafka worker runs one per detector stage with Faust tables as state. Same code, same verdicts.

Event time. Each partition of a stage has a :class:`Watermark`: the minimum, over the input
sources that feed it, of the latest event time each has delivered, less an allowed lateness.
In process there is one source (the file), so it is simply "latest ts seen - lateness". On
Kafka the sources are the input topic partitions, whose events reach a stage partition
interleaved in no fixed order; taking the minimum means a deadline fires only once every
source has moved past it, so the outcome does not depend on that interleaving. Ticks
(``type: tick``) move a source's time forward with no data; ``stormwatch produce`` and the
worker's wall-clock ticker send them to every partition.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from events import Alert, AnyEvent, Detector, Tick

StateFactory = Callable[[str], MutableMapping[str, Any]]


class Watermark:
    """Event time of one stage partition: min over sources of their latest ts, less lateness."""

    def __init__(self, sources: Iterable[str], lateness: float = 0.0) -> None:
        self.latest: dict[str, float] = {s: -math.inf for s in sources}
        self.lateness = lateness
        self.value = -math.inf

    def observe(self, source: str, ts: float) -> bool:
        """Record ``ts`` from ``source``; return True when the watermark moved forward."""
        if ts <= self.latest.get(source, -math.inf):
            return False
        self.latest[source] = ts
        value = min(self.latest.values()) - self.lateness
        if value > self.value:
            self.value = value
            return True
        return False


@dataclass
class _Context:
    """The :class:`events.Context` for one detector on one partition."""

    state: MutableMapping[str, Any]
    timers: MutableMapping[str, Any]
    heap: list[tuple[float, str]]
    partition: int
    watermark: float = -math.inf

    def set_timer(self, key: str, at: float) -> None:
        self.timers[key] = [at, self.partition]
        heapq.heappush(self.heap, (at, key))

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)


@dataclass
class _Stage:
    detector: Detector
    state: MutableMapping[str, Any]
    timers: MutableMapping[str, Any]
    heaps: dict[int, list[tuple[float, str]]] = field(default_factory=dict)

    def context(self, partition: int, watermark: float) -> _Context:
        heap = self.heaps.get(partition)
        if heap is None:
            # First use of this partition since start: rebuild its timer heap from the
            # (possibly recovered) timers mapping.
            heap = [(at, key) for key, (at, part) in list(self.timers.items()) if part == partition]
            heapq.heapify(heap)
            self.heaps[partition] = heap
        return _Context(self.state, self.timers, heap, partition, watermark)


class Engine:
    """Routes validated events to detectors and fires their timers as event time advances."""

    def __init__(
        self,
        detectors: Iterable[Detector],
        state_factory: StateFactory | None = None,
        sources: Iterable[str] = ("input",),
        lateness: float = 0.0,
    ) -> None:
        make = state_factory or (lambda _name: {})
        self.stages = [_Stage(d, make(d.name), make(f"{d.name}-timers")) for d in detectors]
        self.by_type: dict[str, list[_Stage]] = {}
        for stage in self.stages:
            for etype in stage.detector.event_types:
                self.by_type.setdefault(etype, []).append(stage)
        self.sources = tuple(sources)
        self.lateness = lateness
        self.watermarks: dict[int, Watermark] = {}

    def watermark(self, partition: int = 0) -> Watermark:
        wm = self.watermarks.get(partition)
        if wm is None:
            wm = self.watermarks[partition] = Watermark(self.sources, self.lateness)
        return wm

    def reset(self) -> None:
        """Forget in-memory timer heaps and watermarks (after a Kafka rebalance)."""
        self.watermarks.clear()
        for stage in self.stages:
            stage.heaps.clear()

    def process(
        self, event: AnyEvent, source: str | None = None, partition: int = 0, key: str | None = None
    ) -> list[Alert]:
        """Handle one event: advance time (firing due timers), then route the event.

        ``key`` restricts routing to that one key: on Kafka a stage message was already routed
        to the partition of one of the event's keys.
        """
        wm = self.watermark(partition)
        alerts: list[Alert] = []
        if wm.observe(source or self.sources[0], event.epoch):
            alerts.extend(self._fire_timers(partition, wm.value))
        if isinstance(event, Tick):
            return alerts
        for stage in self.by_type.get(event.type, ()):
            ctx = stage.context(partition, wm.value)
            for k in stage.detector.keys(event) if key is None else (key,):
                alerts.extend(stage.detector.on_event(event, k, ctx))
            if ctx.heap and ctx.heap[0][0] <= wm.value:
                alerts.extend(self._fire_stage(stage, partition, wm.value))
        return alerts

    def _fire_timers(self, partition: int, now: float) -> list[Alert]:
        alerts: list[Alert] = []
        for stage in self.stages:
            alerts.extend(self._fire_stage(stage, partition, now))
        return alerts

    def _fire_stage(self, stage: _Stage, partition: int, now: float) -> list[Alert]:
        ctx = stage.context(partition, now)
        alerts: list[Alert] = []
        while ctx.heap and ctx.heap[0][0] <= now:
            at, key = heapq.heappop(ctx.heap)
            current = stage.timers.get(key)
            if current is None or current[0] != at:
                continue  # cancelled or replaced
            del stage.timers[key]
            alerts.extend(stage.detector.on_timer(key, ctx))
        return alerts
