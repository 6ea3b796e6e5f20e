"""The evidence log as a stream: one canonical order of input, a tree per platform in O(log n)
memory, and log records that a reader turns back into an :class:`EvidenceLog`.

Why a sequencer: on Kafka the raw events (from several input partitions) and the alert
versions (from several stages) reach the evidence stage interleaved in no fixed order, and
the recorder's output depends on order (which events are held when an alert is recorded, the
leaf index of every entry). :class:`Sequencer` hands both over in ``(ts, rank, id)`` order
(events before the alert versions of the same instant, alert versions by ``alert_id`` and
``version``) once every source has moved ``margin_s`` past them: the event-time watermark of
the engine (``streams.engine``), with the stages' time as sources too, so an alert version is
recorded only when every event it may cite has been held. ``replay --evidence-dir`` runs the
same sequencer (one source), so the worker writes the same entries.

Nothing here imports Faust: ``streams.kafka.evidence`` wires it to topics and tables.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.log import EvidenceLog, canonical, public_key_b64, signed_head
from evidence.merkle import EMPTY_ROOT, leaf_hash, node_hash
from evidence.recorder import EvidenceRecorder
from events import Alert, AnyEvent
from events.watermark import Watermark


class CompactTree:
    """An RFC 9162 Merkle tree kept as its right edge: the hashes of the complete subtrees that
    make up its ``size`` leaves (one per set bit of ``size``). Enough to append and to compute
    the root; a writer needs no more, and it fits in one table row (32 bytes times log2 n)."""

    def __init__(self, size: int = 0, edge: Iterable[bytes] = ()) -> None:
        self.size = size
        self.edge = list(edge)

    def append(self, data: bytes) -> int:
        index, h, n = self.size, leaf_hash(data), self.size
        while n & 1:  # each completed pair of equal subtrees merges
            h = node_hash(self.edge.pop(), h)
            n >>= 1
        self.edge.append(h)
        self.size += 1
        return index

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        r = self.edge[-1]
        for h in reversed(self.edge[:-1]):
            r = node_hash(h, r)
        return r


class StreamLog:
    """One platform's tree, written as records (``sink``) instead of files: the same entries and
    signed tree heads as :class:`EvidenceLog`. State (:meth:`state`) is a few hundred bytes."""

    def __init__(self, platform: str, key: Ed25519PrivateKey, sink: Callable[[str, dict], None],
                 state: dict | None = None) -> None:
        self.platform, self.key, self.sink = platform, key, sink
        self.public_key = public_key_b64(key)
        state = state or {}
        self.tree = CompactTree(state.get("size", 0), [bytes.fromhex(h) for h in state.get("edge", [])])
        self.log_time = state.get("log_time", 0.0)
        self.head = state.get("head")

    def append(self, entry: dict) -> int:
        entry["index"] = self.tree.size
        leaf = canonical(entry)
        index = self.tree.append(leaf)
        self.sink(self.platform, {"type": "entry", "platform": self.platform, "index": index, "leaf": leaf.decode()})
        return index

    def sign_tree_head(self, timestamp: float) -> dict:
        self.head = signed_head(self.key, self.tree.size, timestamp, self.tree.root())
        self.sink(self.platform, {"type": "tree_head", "platform": self.platform, "tree_head": self.head,
                                  "public_key": self.public_key})
        return self.head

    def state(self) -> dict:
        return {"size": self.tree.size, "edge": [h.hex() for h in self.tree.edge], "log_time": self.log_time,
                "head": self.head}


def read_records(records: Iterable[dict], platform: str | None = None) -> dict[str, EvidenceLog]:
    """Logs (one per platform) from ``evidence-log`` records, read-only, for export. A record
    delivered twice (at-least-once) is taken once; a different leaf at an index already read
    means two writers or a changed record, and is refused."""
    logs: dict[str, EvidenceLog] = {}
    for record in records:
        p = record["platform"]
        if platform is not None and p != platform:
            continue
        log = logs.get(p)
        if log is None:
            log = logs[p] = EvidenceLog(None, None)
        if record["type"] == "entry":
            leaf = record["leaf"].encode()
            i = record["index"]
            if i < len(log.leaves):
                if log.leaves[i] != leaf:
                    raise ValueError(f"evidence log of {p}: two different entries at index {i}")
                continue
            if i != len(log.leaves):
                raise ValueError(f"evidence log of {p}: entry {i} follows entry {len(log.leaves) - 1}")
            log._add(leaf, orjson.loads(leaf)["alert_id"])
        elif record["type"] == "tree_head":
            head = orjson.loads(canonical(record["tree_head"]))  # keys sorted, as EvidenceLog.open reads them
            if not log.tree_heads or head["tree_size"] > log.tree_heads[-1]["tree_size"]:
                log.tree_heads.append(head)
                log.public_key = record["public_key"]
    for p, log in logs.items():  # a head names entries a reader must have: never one past them
        log.tree_heads = [h for h in log.tree_heads if h["tree_size"] <= len(log.leaves)]
    return logs


def alert_epoch(alert: Alert) -> float:
    return datetime.fromisoformat(alert.ts).timestamp()


class Sequencer:
    """Feeds a recorder in one order, whatever the order of arrival (see the module docstring).

    ``event``, ``alert`` and ``tick`` take input from a named source. Each platform's items wait
    in a heap of their own until the platform's time passes them: a
    :class:`events.watermark.Watermark` over ``sources`` with ``margin_s`` as its lateness, the
    least latest time of that platform's events (or ticks) over the sources. So a platform
    stamping its events ahead of the others moves no other platform's log (the engine's event
    time per platform, one rule). An item arriving behind its platform's time is handed over at
    once (counted in ``late``). An alert version already recorded (a redelivery) is dropped; the
    regulator's alerts (platform ``*``) are not logged (:meth:`EvidenceRecorder.record`), so they
    do not wait. Also the recorder's adapter for :class:`streams.local.LocalPipeline`
    (``observe`` and ``record``, source "file")."""

    def __init__(self, recorder: EvidenceRecorder, sources: Iterable[str], margin_s: float,
                 max_bytes: float = math.inf) -> None:
        self.recorder = recorder
        self.watermark = Watermark(sources, margin_s)
        self.margin_s = margin_s
        # platform -> (key, arrival, item): equal keys leave in the order they came
        self.heaps: dict[str, list[tuple]] = {}
        # Raw bytes waiting, per platform and in all: over ``max_bytes`` the platform waiting
        # with most hands its earliest over before its turn (``forced``), as the recorder's own
        # bound lets the oldest of the platform holding most go. A platform lagging behind the
        # others holds the targets stage, and so every platform's log, back (Engine.held_from):
        # without a bound its lag would be memory here.
        self.max_bytes = max_bytes
        self.waiting_bytes: dict[str, int] = {}
        self.total_bytes = 0
        self.forced = 0
        self._arrivals = itertools.count()
        self.recorded: dict[str, int] = {}  # alert id -> the latest version recorded
        self.late = 0
        self.on_release: Callable[[str, Any], None] | None = None  # what was handed over (Kafka: table rows)
        self.held_from = math.inf  # see hold_back
        self._blocked: set[str] = set()  # platforms whose own time passed their earliest item: held_from holds them

    @property
    def logs(self):  # noqa: ANN201 - the recorder's logs (replay: a PlatformLogs)
        return self.recorder.logs

    def waiting(self) -> int:
        """Items waiting for their platform's time."""
        return sum(map(len, self.heaps.values()))

    # -- LocalPipeline's recorder interface --------------------------------------------------------

    def observe(self, raw: bytes, event: AnyEvent) -> None:
        if event.type == "tick":
            self.tick("file", event.epoch, event.platform)
        else:
            self.event(raw, event, "file")

    def record(self, alert: Alert) -> None:
        self.alert(alert, "file")

    def hold_back(self, held_from: float, release: bool = True) -> None:
        """The engine still holds an event at ``held_from`` (Engine.held_from: a stage spanning
        platforms waits for the slowest), so the alerts citing it have not come: nothing at or
        after it, less the margin, leaves. On Kafka the stages fold this into the times they
        send; in replay the file is the one source, so the pipeline says it here: lowered at
        once, raised only with ``release`` (once the alerts of what the engine let go are in),
        handing over what it then passes."""
        if held_from < self.held_from or release:
            raised = held_from > self.held_from
            self.held_from = held_from
            if raised:  # only the platforms it held: a release over every platform's heap was O(platforms)
                blocked, self._blocked = self._blocked, set()
                for platform in blocked:
                    self._release_one(platform)

    # -- input -------------------------------------------------------------------------------------

    def event(self, raw: bytes, event: AnyEvent, source: str) -> None:
        self.hold(raw, event)
        moved = self.watermark.observe(source, event.epoch, event.platform) if source in self.watermark.ticks else []
        self._release(moved)  # (an unknown source cannot hold the log back)
        if event.platform not in moved:  # its time did not move: it may be behind it already
            self._release_one(event.platform)

    def hold(self, raw: bytes, event: AnyEvent) -> None:
        """An event to hand over in its turn, with no news of any source's time (a restart)."""
        platform = event.platform
        self._push(platform, (event.epoch, 0, platform, event.event_id), ("event", raw, event))
        self.waiting_bytes[platform] = self.waiting_bytes.get(platform, 0) + len(raw)
        self.total_bytes += len(raw)
        while self.total_bytes > self.max_bytes:
            most = max(self.waiting_bytes, key=lambda q: (self.waiting_bytes[q], q))
            self.forced += 1
            self._hand_over(most, heapq.heappop(self.heaps[most]))

    def alert(self, alert: Alert, source: str | None) -> None:
        if (alert.platform == "*" or getattr(alert, "shadow", False)
                or alert.version <= self.recorded.get(alert.alert_id, 0)):
            return
        self._push(alert.platform, (alert_epoch(alert), 1, alert.alert_id, alert.version), ("alert", alert))
        if source is not None:
            self._release_one(alert.platform)

    def _push(self, platform: str, key: tuple, item: tuple) -> None:
        if key[0] <= self.watermark.of(platform):
            self.late += 1
        heap = self.heaps.get(platform)
        if heap is None:
            heap = self.heaps[platform] = []
        heapq.heappush(heap, (key, next(self._arrivals), item))

    def tick(self, source: str, t: float, platform: str | None = None) -> None:
        """``source`` has delivered everything up to ``t`` (of ``platform``; None: of every platform)."""
        if source in self.watermark.ticks:  # an unknown source cannot hold the log back
            self._release(self.watermark.observe(source, t, platform))

    def _release(self, moved: list[str | None]) -> None:
        """Hand over what the lanes that moved now pass (None: the floor, the time of a platform
        with items waiting here but no events or ticks of its own seen yet)."""
        for platform in moved:
            if platform is not None:
                self._release_one(platform)
            else:
                for waiting in [p for p in self.heaps if p not in self.watermark.values]:
                    self._release_one(waiting)

    def release(self, everything: bool = False) -> None:
        """Hand over what each platform's time passed (``everything``: the end of a finite input)."""
        for platform in list(self.heaps):
            self._release_one(platform, everything)

    def _release_one(self, platform: str, everything: bool = False) -> None:
        heap = self.heaps.get(platform)
        if not heap:
            return
        until = math.inf if everything else min(self.watermark.of(platform), self.held_from - self.margin_s)
        while heap and heap[0][0][0] <= until:
            self._hand_over(platform, heapq.heappop(heap))
        if heap and heap[0][0][0] <= self.watermark.of(platform):
            self._blocked.add(platform)
        # No eviction by the watermark itself: the recorder's time is the last event handed over,
        # so what it holds depends on the order alone, never on when sources spoke.

    def _hand_over(self, platform: str, entry: tuple) -> None:
        """One item, taken off ``platform``'s heap, to the recorder."""
        _key, _arrival, item = entry
        if item[0] == "event":
            size = len(item[1])
            self.total_bytes -= size
            if self.waiting_bytes[platform] == size:
                del self.waiting_bytes[platform]
            else:
                self.waiting_bytes[platform] -= size
            self.recorder.observe(item[1], item[2])
        else:
            alert = item[1]
            if alert.version > self.recorded.get(alert.alert_id, 0):
                self.recorded[alert.alert_id] = alert.version
                self.recorder.record(alert)
            else:
                item = None
        if item is not None and self.on_release is not None:
            self.on_release(item[0], item[1] if item[0] == "alert" else item[2])
        if not self.heaps[platform]:  # platform names are anyone's strings: no empty heap is kept
            del self.heaps[platform]

    def flush(self) -> None:
        """The input ended: hand over everything still waiting."""
        self.release(everything=True)
