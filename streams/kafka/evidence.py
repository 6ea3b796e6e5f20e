"""The worker's evidence log (``STORMWATCH_EVIDENCE__WORKER=true``): an ``evidence`` stage keyed
by platform, the single writer of each platform's tree.

* ``ingest`` sends every valid event's bytes as received to the stage (key: its platform), and
  every input tick to all of its partitions; each stage sends its alert versions (key: the
  alert's platform) and, after each message, the times of the platforms it touched there (a
  tick naming the platform: each platform's log goes by its own time, as its alerts do; at
  most once per ``TICK_EVERY_S`` of event time unless it handled a tick or raised an alert). A :class:`evidence.stream.Sequencer` per partition waits for all those sources
  and hands events and alerts to the recorder in event-time order, as ``replay`` does.
* Log entries and signed tree heads go to the ``evidence-log`` topic, keyed by platform.
* State, in changelogged tables written once per batch: ``evidence-held`` (every raw event
  received, until the recorder lets it go by ``retention_s`` or ``max_held_bytes``, and alert
  versions not logged yet) and ``evidence-trees`` (per platform the tree's size, right edge,
  latest head; per alert the version and entries logged; per partition the sources' times,
  under a key naming the partition: the memory store keeps all partitions in one dict). A restarted
  worker rebuilds its recorder from them and appends where it stopped.

A regulator-only alert (platform ``*``, a finding across platforms) is not logged here: no
single platform's writer holds its events. Each platform's own alert of the same finding is.
"""

from __future__ import annotations

import base64
import logging
import math
import time

import faust
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import INPUT_TOPICS, Alert, DeadLetter, decode, keys
from evidence.bundle import export
from evidence.log import EvidenceLog, PlatformLogs, signing_key
from evidence.recorder import EvidenceRecorder
from evidence.stream import Sequencer, StreamLog, read_records
from events.watermark import Watermark, moved_times
from streams.kafka.batches import Outbox
from streams.kafka.stage import RAW_BYTES, SOURCE_HEADER, _as_current, _header, finish_batch, record_entries, tick_json
from streams.kafka.state import TableState, kafka_producer, write_back
from streams.registry import partition_of
from streams.settings import Settings

log = logging.getLogger("stormwatch.evidence")
KIND_HEADER = "stormwatch-evidence"  # event, alert or tick (on a record of one entry, from before batching)
EVIDENCE = "evidence"  # the evidence stage, as named in an outbox (see EvidenceStage.targets)
# A stage sends its time at most this often (event time) unless it handled a tick or raised an
# alert: each one is a message to every evidence partition, and the sequencer waits
# ``order_margin_s`` (300 s) anyway.
TICK_EVERY_S = 10.0


def evidence_topic_names(settings: Settings) -> list[str]:
    """The topics the evidence stage adds (none when it is off)."""
    if not settings.evidence.worker:
        return []
    return [settings.topic(f"{settings.app_id}-stage-evidence"), settings.topic("evidence-log")]


def held_event(platform: str, event_id: str) -> str:
    """The ``evidence-held`` row of one platform's event, its ids escaped (:func:`events.keys.key`):
    joined plainly, platform ``a`` with event ``b<TAB>c`` and platform ``a<TAB>b`` with event
    ``c`` shared a row, so the second was taken for a redelivery and never logged."""
    return keys.key("event", platform, event_id)


class _Partition:
    """One evidence partition: its recorder, trees and sequencer, rebuilt from the tables."""

    def __init__(self, partition: int, settings: Settings, key: Ed25519PrivateKey, sources: list[str],
                 held: TableState, meta: TableState, out: list) -> None:
        self.partition = partition
        self.logs: dict[str, StreamLog] = {}
        self.key, self.meta, self.held, self.out = key, meta, held, out
        self.recorder = EvidenceRecorder(self, settings.evidence)
        self.recorder.on_evict = self.evicted
        self.sequencer = Sequencer(self.recorder, sources, settings.evidence.order_margin_s,
                                   settings.evidence.max_held_bytes)
        self.sequencer.on_release = self.released
        self.restore()

    def sink(self, platform: str, record: dict) -> None:
        self.out.append((platform, record))

    def log_for(self, platform: str) -> StreamLog:
        tree = self.logs.get(platform)
        if tree is None:
            tree = self.logs[platform] = StreamLog(platform, self.key, self.sink, self.meta.get(f"tree\t{platform}"))
        return tree

    def evicted(self, key: tuple[str, str]) -> None:
        self.held.pop(held_event(*key), None)

    def released(self, kind: str, item) -> None:  # noqa: ANN001 - an event or an alert
        if kind != "alert":
            return
        self.held.pop(f"alert\t{item.alert_id}\t{item.version}", None)
        logged = self.recorder.logged.get(item.alert_id, {})
        self.meta[f"alert\t{item.alert_id}"] = {"version": item.version,
                                                 "logged": [[*k, i] for k, i in logged.items()]}
        tree = self.logs[item.platform]
        self.meta[f"tree\t{item.platform}"] = tree.state()

    def restore(self) -> None:
        """Rebuild from the tables: events already handed over are held again (in order), the
        rest wait in the sequencer with the alerts not logged yet."""
        # Tables written before the key named its partition hold one "watermark" row for all of
        # them: read it only when this partition has no row of its own. A row written before
        # platforms had their own time (``{source: ts}``) is read as ticks (Watermark.restore).
        legacy = f"watermark\t{self.partition}" not in self.meta
        watermark = self.sequencer.watermark
        for key, value in self.meta.items():
            if key.startswith("alert\t"):
                alert_id = key.split("\t", 1)[1]
                self.sequencer.recorded[alert_id] = value["version"]
                self.recorder.logged[alert_id] = {(a, b): i for a, b, i in value["logged"]}
            elif key == f"watermark\t{self.partition}" or (key == "watermark" and legacy):
                watermark.restore(value)
        events, alerts = [], []
        for key, value in self.held.items():
            if key.startswith("event\t"):
                raw = base64.b64decode(value)
                parsed = decode(raw, "evidence-held")
                if not isinstance(parsed, DeadLetter):
                    events.append((parsed.epoch, parsed.event_id, raw, parsed))
            elif key.startswith("alert\t"):
                alerts.append(Alert.model_validate_json(value))
        for t, _eid, raw, parsed in sorted(events, key=lambda e: e[:2]):
            if t <= watermark.of(parsed.platform):
                self.recorder.observe(raw, parsed)
            else:
                self.sequencer.hold(raw, parsed)
        for alert in alerts:
            self.sequencer.alert(alert, None)


class EvidenceStage:
    """The stage's topic, tables and agent, and the hooks ``ingest`` and the stages call."""

    def __init__(self, app: faust.App, settings: Settings, stage_names: list[str], admit) -> None:  # noqa: ANN001
        self.app, self.settings, self.admit, self.tick_json = app, settings, admit, tick_json
        raw = RAW_BYTES
        stage_name, log_name = evidence_topic_names(settings)
        self.topic = app.topic(stage_name, partitions=settings.partitions, **raw)
        self.log_topic = app.topic(log_name, **raw)
        schema = faust.Schema(key_serializer="json", value_serializer="json")
        self.sent: list = []  # the tables' changelog messages, acknowledged before a batch is acked
        self.held = TableState(app.Table("evidence-held", default=None, partitions=settings.partitions, schema=schema),
                               self.sent)
        self.meta = TableState(app.Table("evidence-trees", default=None, partitions=settings.partitions, schema=schema),
                               self.sent)
        if settings.evidence_signing_key:
            self.key = signing_key(settings.evidence_signing_key)
        else:
            self.key = Ed25519PrivateKey.generate()
            log.warning("no STORMWATCH_EVIDENCE_SIGNING_KEY: evidence tree heads are signed with a new key each "
                        "time the worker starts")
        self.sources = ([f"{settings.topic(t)}/{p}" for t in INPUT_TOPICS for p in range(settings.partitions)]
                        + [f"stage:{name}/{p}" for name in stage_names for p in range(settings.partitions)])
        self.parts: dict[int, _Partition] = {}
        self.forwarded: dict[tuple, float] = {}  # (stage, partition, platform) -> stage time last sent
        app.on_partitions_revoked.connect(self._revoked)
        app.agent(self.topic, name="stage-evidence")(self._run)

    async def _revoked(self, *_args, **_kwargs) -> None:
        self.parts.clear()  # rebuilt from the tables on next use: another worker may own them now

    # -- hooks ---------------------------------------------------------------------------------

    # What goes to the evidence stage travels in the caller's stage records
    # (:mod:`streams.kafka.batches`), under the name ``EVIDENCE``; an entry's key is its kind.

    def input_event(self, outbox: Outbox, parsed, raw: bytes, source: str) -> None:  # noqa: ANN001
        outbox.add(EVIDENCE, partition_of(parsed.platform.encode(), self.settings.partitions), source, b"event", raw)

    def input_tick(self, outbox: Outbox, raw: bytes, source: str) -> None:
        for p in range(self.settings.partitions):
            outbox.add(EVIDENCE, p, source, b"tick", raw)

    def stage_output(self, outbox: Outbox, stage: str, partition: int, alerts: list[Alert], watermark: Watermark,
                     platforms: list[str | None], was_tick: bool, held_from: float = math.inf) -> None:
        """After a stage handled an event: its alert versions, then the times of ``platforms``
        (and of the alerts' platforms) there, each platform's its own (Watermark.source_time),
        none past ``held_from`` (Engine.held_from)."""
        source = f"stage:{stage}/{partition}"
        for alert in alerts:
            if alert.platform != "*" and not getattr(alert, "shadow", False):
                outbox.add(EVIDENCE, partition_of(alert.platform.encode(), self.settings.partitions), source,
                           b"alert", alert.to_json())
                platforms = [*platforms, alert.platform]
        every = 0.0 if alerts else TICK_EVERY_S
        for platform, now in moved_times(watermark, dict.fromkeys(platforms), was_tick, self.forwarded,
                                         (stage, partition), every, held_from):
            value = self.tick_json(now, platform)
            for p in range(self.settings.partitions):
                outbox.add(EVIDENCE, p, source, b"tick", value)

    # -- the agent -----------------------------------------------------------------------------

    def _part(self, partition: int, out: list) -> _Partition:
        for state in (self.held, self.meta):
            state.partition = partition
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = _Partition(partition, self.settings, self.key, self.sources, self.held,
                                                      self.meta, out)
        part.out = out
        return part

    async def _run(self, stream: faust.StreamT) -> None:
        async for batch in stream.take_events(self.settings.stage_batch, within=self.settings.stage_batch_wait_s):
            last: dict[int, faust.EventT] = {}
            logged: list = []  # (platform, log record) of this batch
            log_sent: list = []
            handled: list = []  # the batch's messages handled here (a hole read back included)
            try:
                for event in batch:
                    async def handle(message, event=event) -> None:  # noqa: ANN001
                        _as_current(event)
                        last[message.partition] = event
                        logged.extend(self._handle_record(message))

                    await self.admit.each(event.message, handled, handle)
            finally:
                await finish_batch(self.app, self.admit, handled,
                                   ("the evidence stage's log records", log_sent, lambda: self._send_log(logged, log_sent)),
                                   [("the evidence stage's batch", self.sent, lambda: self._write(last))],
                                   drop=self._drop)

    def _handle_record(self, message) -> list:  # noqa: ANN001 - a Faust Message or a ReadBack
        """One evidence-stage record's entries; the log records they make."""
        source = _header(message.headers, SOURCE_HEADER) or "unknown"
        out: list = []
        where = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            part = self._part(message.partition, out)
            entries = record_entries(message, _header(message.headers, KIND_HEADER))
        except Exception:  # a bad record must never stop the log
            log.exception("evidence stage failed on %s", where)
            entries = []
        for i, (kind, value) in enumerate(entries):
            try:
                self._handle(part, kind, source, value)
            except Exception:  # nor a bad entry the rest of its record
                log.exception("evidence stage failed on %s#%s", where, i)
        return out

    def _drop(self) -> None:
        for state in (self.held, self.meta):
            state.drop()

    async def _send_log(self, logged: list, sent: list) -> None:
        """A batch's log records, before its state: a batch cut short is read again whole."""
        _as_current(None)
        for platform, record in logged:
            sent.append(await self.log_topic.send(key=platform.encode(), value=orjson.dumps(record)))

    async def _write(self, last: dict[int, faust.EventT]) -> None:
        """The batch's table changes and its partitions' source times (its log records went out
        before, see :meth:`_send_log`; the changes are acknowledged by
        :func:`streams.kafka.stage.persist`)."""
        for p, event in last.items():
            part = self.parts.get(p)
            if part is not None:
                _as_current(event)
                self.meta.partition = p
                stored = part.sequencer.watermark.dump()
                if stored["ticks"] or stored["platforms"]:
                    self.meta[f"watermark\t{p}"] = stored
        await write_back((self.held, self.meta), lambda p: _as_current(last[p]), kafka_producer(self.app))
        _as_current(None)
        await self.app.producer.flush()

    def _handle(self, part: _Partition, kind: str | None, source: str, value: bytes) -> None:
        seq = part.sequencer
        if kind == "alert":
            alert = Alert.model_validate_json(value)
            self.held[f"alert\t{alert.alert_id}\t{alert.version}"] = value.decode()
            seq.alert(alert, source)
            return
        parsed = decode(value, source)
        if isinstance(parsed, DeadLetter):
            log.warning("evidence stage: undecodable record from %s: %s", source, parsed.error)
            return
        if kind == "tick" or parsed.type == "tick":
            seq.tick(source, parsed.epoch, parsed.platform)
            return
        row = held_event(parsed.platform, parsed.event_id)
        if row not in self.held:  # a redelivery is held once, and moves no time: a copy may carry another ts
            self.held[row] = base64.b64encode(value).decode()
            seq.event(value, parsed, source)

    # -- reading the log back ------------------------------------------------------------------


def read_log_topic(settings: Settings, timeout_s: float = 30.0) -> list[dict]:
    """Every record of the ``evidence-log`` topic, from the start to its end when called."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.settings import bootstrap_servers

    name = settings.topic("evidence-log")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers(settings.broker), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=1000)
    try:
        consumer.topics()  # a fresh client knows no topic until it fetched the cluster's metadata
        partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {name}: not at its end after {timeout_s:g} s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(orjson.loads(message.value) for message in batch)
        return records
    finally:
        consumer.close()


def log_from_kafka(settings: Settings, alert_id: str) -> EvidenceLog:
    """The platform tree that holds ``alert_id``, read from the ``evidence-log`` topic."""
    return PlatformLogs.of(read_records(read_log_topic(settings))).find(alert_id)


def export_from_kafka(settings: Settings, alert_id: str) -> bytes:
    return export(log_from_kafka(settings, alert_id), alert_id)
