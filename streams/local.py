"""The in-process pipeline behind ``replay`` and ``demo``: decode, engine, outputs.

No broker: events come from a file or the simulator, state lives in dicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from events import Alert, DeadLetter, decode
from streams import metrics
from streams.engine import Engine, LateEvent
from streams.registry import build_detectors, refuser
from streams.runtime import tune_gc
from streams.settings import Settings

if TYPE_CHECKING:
    from evidence.recorder import EvidenceRecorder

AlertSink = Callable[[Alert], None]
DeadLetterSink = Callable[[DeadLetter], None]


class LocalPipeline:
    """Feeds raw lines through :func:`events.decode` and one :class:`Engine` of every detector."""

    def __init__(self, settings: Settings, on_alert: AlertSink, on_deadletter: DeadLetterSink,
                 recorder: EvidenceRecorder | None = None) -> None:
        """``recorder``, when given, keeps the raw events each alert version cites (``evidence/``)."""
        tune_gc(settings.gc_threshold, settings.gc_middle_passes)
        detectors = build_detectors(settings)
        self.routable = refuser(detectors, settings.platform_ids())
        self.engine = Engine(detectors, lateness=settings.allowed_lateness_s,
                             dedupe_window=settings.dedupe_window_s)
        self.max_future_s = settings.max_future_s
        self.on_alert = on_alert
        self.on_deadletter = on_deadletter
        self.recorder = recorder
        # a Sequencer (replay --evidence-dir) also learns what the engine still holds
        self._hold_back = getattr(recorder, "hold_back", None)
        self.events = 0
        self.deadletters = 0
        self.alerts = 0
        self._counted: dict[str, object] = {}
        self._latency = metrics.LATENCY.labels("local")

    def feed(self, raw: bytes, source: str, topic: str = "file") -> None:
        started = time.perf_counter()
        counter = self._counted.get(topic)
        if counter is None:
            counter = self._counted[topic] = metrics.EVENTS.labels(topic)
        counter.inc()
        event = self.routable(decode(raw, source, now=time.time(), max_future_s=self.max_future_s), raw, source)
        if isinstance(event, DeadLetter):
            self.deadletters += 1
            metrics.DEADLETTERS.labels(event.reason).inc()
            self.on_deadletter(event)
            return
        self.events += 1
        copies = self.engine.copies
        alerts = self.engine.process(event)
        letters = detector_failures(self.engine, source)
        # Not a copy the engine dropped: the log keeps the copy that counted (a later one may
        # carry another ts and so come first), as the worker's does; nor a late event.
        held = self.engine.held_from() if self._hold_back is not None else None
        if held is not None:
            self._hold_back(held, release=False)  # the event just taken may be one the engine holds
        if (self.recorder is not None and self.engine.copies == copies
                and not any(letter.reason == "late" for letter in letters)):
            self.recorder.observe(raw, event)  # before its alerts, which may cite it
        self._emit(alerts, letters)
        if held is not None:
            self._hold_back(held)  # what the engine let go: its alerts are in
        self._latency.observe(time.perf_counter() - started)

    def _emit(self, alerts: list[Alert], letters: list[DeadLetter]) -> None:
        for alert in alerts:
            self.alerts += 1
            metrics.ALERTS.labels(alert.kind).inc()
            self.on_alert(alert)
            if self.recorder is not None:
                self.recorder.record(alert)
        for letter in letters:
            self.deadletters += 1
            metrics.DEADLETTERS.labels(letter.reason).inc()
            self.on_deadletter(letter)

    def finish(self) -> None:
        """End of the input: each platform's time is as far as its events got (one source), but
        a stage spanning platforms still holds what only a slower platform kept back."""
        self._emit(self.engine.finish(), detector_failures(self.engine, "end of input"))
        if self._hold_back is not None:
            self._hold_back(self.engine.held_from())


def detector_failures(engine: Engine, source: str) -> list[DeadLetter]:
    """Dead letters for the last input: detector calls that failed, and a late event."""
    letters = []
    for name, err, event in engine.drain_failures():
        raw = event.model_dump_json()[:65536] if event is not None else ""
        if isinstance(err, LateEvent):
            letters.append(DeadLetter(str(err), "late", raw, source))
        else:
            letters.append(DeadLetter(f"detector {name} failed: {err!r}", "detector_error", raw, source))
    return letters


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines of a JSON Lines file as bytes, with 1-based line numbers."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def replay_lines(pipeline, path: Path, lines: Iterable[tuple[int, bytes]] | None = None, last: bool = True) -> None:
    """Feed a file's lines; ``last``: they are the end of the input (see ``finish``)."""
    for number, line in lines if lines is not None else read_lines(path):
        pipeline.feed(line, f"{path.name}:{number}")
    if last:
        pipeline.finish()
