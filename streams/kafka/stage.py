"""One stage of the worker: an engine over the stage's detectors, fed by its stage topic.

A stage agent reads its topic in batches, runs the engine with Faust tables as state (written
once per key per batch, see :mod:`streams.kafka.state`), sends alerts, forwards emitted events and
its source time downstream, and makes each batch's effects atomic across a kill (a redo record
before the table writes; docs/KNOWN-PROBLEMS.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import faust
import orjson
from faust.streams import _current_event

from events import DeadLetter, Detector, Tick, decode, format_ts, raw_text
from events.watermark import moved_times, touched
from streams import metrics
from streams.engine import Engine
from streams.kafka.batches import BATCH_HEADER, Outbox, unpack
from streams.kafka.state import (TableState, delivered, kafka_producer, redo_changes, redo_parts, track_changelog,
                                 write_back)
from streams.local import detector_failures
from streams.registry import partition_of, stage_sources
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.kafka.evidence import EvidenceStage

log = logging.getLogger("stormwatch.worker")
SOURCE_HEADER = "stormwatch-source"
# Topic options for messages kept as bytes (the input, stage, alert and evidence topics).
RAW_BYTES = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
REDO_PART_BYTES = 256_000  # one redo message at most (Kafka's default limit is about 1 MB)


def _header(headers: object, name: str) -> str | None:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for key, value in items:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def record_entries(message, single_key: str | None) -> list[tuple[str | None, bytes]]:  # noqa: ANN001
    """A stage record's ``(key, event)`` entries (:mod:`streams.kafka.batches`); a record from
    before batching is its one event, under ``single_key``. ``ValueError`` when broken.
    ``message``: a Faust Message or a ReadBack (raw bytes either way)."""
    value = message.value or b""
    if _header(message.headers, BATCH_HEADER) is None:
        return [(single_key, value)]
    return unpack(value)


def _as_current(event: faust.EventT | None) -> None:
    """Make ``event`` the current event of this task: Faust writes a table (its changelog
    partition and its RocksDB store) for the current event's partition. ``take_events`` reads
    the stream in another task, so the agent sets it itself. Only the task-local variable is
    set; the stream's own ``current_event`` belongs to that other task."""
    _current_event.set(weakref.ref(event) if event is not None else None)


def first_offsets(handled: list) -> dict:
    """Per topic partition the lowest offset of the messages ``handled`` (a seek's re-read can
    come after later ones)."""
    starts: dict = {}
    for message in handled:
        starts[message.tp] = min(message.offset, starts.get(message.tp, message.offset))
    return starts


async def persist(app: faust.App, admit, handled: list, what: str, sent: list,  # noqa: ANN001
                  write: Callable[[], Awaitable[None]]) -> None:
    """``write()`` what a batch leaves in Kafka (its state; for ``ingest``, its stage records),
    then wait until Kafka acknowledged every changelog message in ``sent``. If that fails, the
    batch is never committed (the watchdog's commit cap goes back to the lowest offset of the
    messages it ``handled``, a hole read back included) and the worker crashes: running on,
    Faust would restart the agent, whose local store already holds the batch (its seen records
    too), so the re-read would be skipped, then committed. A cancelled batch (the worker is
    stopping) is only kept from the commit."""
    try:
        await write()
        await delivered(sent)
    except BaseException as err:
        admit.rewind(first_offsets(handled))
        if not isinstance(err, asyncio.CancelledError):
            log.error("%s did not reach Kafka (%r): not committed; the worker stops", what, err)
            await app.crash(err)
        raise


Step = tuple[str, list, Callable[[], Awaitable[None]]]  # (what, its changelog futures, write)


async def finish_batch(app: faust.App, admit, handled: list, outputs: Step, state: list[Step],  # noqa: ANN001
                       drop: Callable[[], None]) -> None:
    """A batch's end: its outputs (alerts, stage records, log records) sent and acknowledged,
    then its state, step by step (each later step attempted even when an earlier one failed:
    what was written may be all that is left), each through :func:`persist`.

    When the outputs are not all out (a send failed, or the worker stops meanwhile), ``drop()``
    discards the batch's pending state and no step runs: the batch is read again whole after
    the restart. Keeping its state instead would make the re-read skip events (the seen-set)
    whose outputs never left."""
    what, sent, write = outputs
    try:
        await persist(app, admit, handled, what, sent, write)
    except BaseException:
        drop()
        raise
    failed: BaseException | None = None
    for what, sent, write in state:
        try:
            await persist(app, admit, handled, what, sent, write)
        except BaseException as err:  # the next step is still attempted; the first error is raised
            failed = failed or err
    if failed is not None:
        raise failed


class Landing:
    """A stage's last batch's table writes, acknowledged in the background while the next batch
    runs: the batch's redo record, acknowledged before them, already carries every change they
    do, so nothing is lost if they are. Until they land, the commits stay where they would have
    been had the batch waited (:meth:`hold`), and the next redo record waits for them
    (:meth:`wait`): a partition's record replaces the last, which must not go while that batch's
    writes could still be lost. A write that fails stops the worker (``crash``), as it did
    when the batch waited; the commits stay held."""

    def __init__(self, crash: Callable[[BaseException], Awaitable[None]], what: str) -> None:
        self.crash, self.what = crash, what
        self.flying: list[tuple[asyncio.Future, dict[int, int]]] = []  # (acknowledgement, offsets held per partition)

    def add(self, futures: list, hold: dict[int, int]) -> None:
        """A batch's changelog futures, and per partition the lowest offset its commits wait at."""
        if not futures:
            return
        acked = asyncio.ensure_future(delivered(futures))
        entry = (acked, hold)
        self.flying.append(entry)

        def landed(done: asyncio.Future) -> None:
            if done.cancelled():
                return  # stopping: the commits stay held, and the redo record has the changes
            if done.exception() is None:
                self.flying.remove(entry)
                return
            log.error("%s: a batch's state did not reach Kafka (%r): the worker stops", self.what, done.exception())
            asyncio.ensure_future(self.crash(done.exception()))

        acked.add_done_callback(landed)

    def hold(self, partition: int) -> int | None:
        """The lowest offset of ``partition`` a batch still landing holds the commits at."""
        return min((hold[partition] for _, hold in self.flying if partition in hold), default=None)

    async def wait(self) -> None:
        """Until every batch's writes landed; raises what a failed one raised."""
        for acked, _hold in list(self.flying):
            await asyncio.shield(acked)


def _keep_within(kept: OrderedDict[bytes, object], size: int, budget: int) -> int:
    """Drop the oldest of ``kept`` (bytes as keys, ``size`` of them in all) until at most
    ``budget`` bytes are left; returns what is left. The oldest first: a stage reads an event soon
    after it was kept."""
    while size > budget:
        oldest, _ = kept.popitem(last=False)  # O(1), where next(iter(dict)) walks deleted slots
        size -= len(oldest)
    return size


class Decoded:
    """The events this worker wrote to its stage records and its stages have yet to read, by
    their bytes (at most ``budget`` bytes of them): each input the ingest validated, each event
    a stage emitted.

    The ingest hands an input's own bytes to every stage it feeds, and a stage hands what it
    emits (a post's act, a co-action, with the author's card) to the next as JSON; each stage
    decoded and validated them again, 6 to 8% of a worker's CPU (py-spy, sessions 15 and 16). A
    stage on this worker takes the event it was made from instead, as a stage in process does.
    An event is frozen, and the same bytes decode to an equal one, so sharing it changes
    nothing; one from another worker, or read back after a restart, is decoded as before.

    An event leaves once it was read as often as the stage partitions of this worker it went
    into (``readers``: a record each, which reads it once; :meth:`readers` counts them against
    :attr:`owned`, set at each assignment): so the budget holds what is still to come rather
    than what was read (one worker decoded 30k of 74k co-action entries again, session 18, when
    the oldest simply went first), and nothing waits for a reader on another worker. A read
    more (a record cut in two, one read again) only makes a later read decode; a read fewer
    leaves the event to the budget. Messages over ``max_bytes`` are not kept, and the oldest go
    once the kept ones pass ``budget`` bytes, so memory stays bounded (an event takes a few times
    its message's size) whatever the posts hold. The ingest, far quicker than the stages, waits
    for :meth:`room` before each read: run ahead unchecked, it pushed out events before their
    readers came (session 30, one worker draining a backlog: 1.5 entries per input event decoded
    again, none with the wait; and the drain ran at 0.83 of the rate it has with the wait).

    An event a stage here decoded itself (from another worker, or past the budget) is
    :meth:`remember`-ed, within ``recent_budget`` bytes, oldest out first: the other stages here
    that read the same bytes take it (an input goes to four or five stages)."""

    def __init__(self, budget: int = 8_000_000, max_bytes: int = 16_384, recent_budget: int = 4_000_000) -> None:
        self.budget, self.max_bytes, self.size = budget, max_bytes, 0
        self.events: OrderedDict[bytes, list] = OrderedDict()  # bytes -> [event, readers left]
        self.recent_budget, self.recent_size = recent_budget, 0
        self.recent: OrderedDict[bytes, object] = OrderedDict()  # bytes -> an event a stage decoded (remember)
        self.owned: frozenset[tuple[str, int]] = frozenset()  # the (stage, partition)s this worker reads

    def own(self, stage_partitions: Iterable[tuple[str, int]]) -> None:
        """The stage partitions this worker reads from now on (at an assignment; none while a
        rebalance runs). What was kept for the earlier ones goes: it may never be read here."""
        self.owned = frozenset(stage_partitions)
        self.events.clear()
        self.size = 0

    def readers(self, into: Iterable[tuple[str, int]]) -> int:
        """How many of the stage partitions ``into`` (a record each) are read on this worker."""
        return sum(1 for stage_partition in into if stage_partition in self.owned)

    def put(self, raw: bytes, event: object, readers: int = 1) -> None:
        if len(raw) > self.max_bytes or readers <= 0:
            return
        kept = self.events.get(raw)
        if kept is not None:  # the same bytes again (a duplicate): read as often again, from now
            kept[1] += readers
            self.events.move_to_end(raw)
            return
        self.events[raw] = [event, readers]
        self.size = _keep_within(self.events, self.size + len(raw), self.budget)

    def remember(self, raw: bytes, event: object) -> None:
        """An event a stage here decoded from ``raw`` itself, for the next stage here to read it."""
        if len(raw) > self.max_bytes or raw in self.recent:
            return
        self.recent[raw] = event
        self.recent_size = _keep_within(self.recent, self.recent_size + len(raw), self.recent_budget)

    def get(self, raw: bytes) -> object | None:
        """The event for ``raw``, counted as read once (gone after its last reader)."""
        kept = self.events.get(raw)
        if kept is None:
            return self.recent.get(raw)
        kept[1] -= 1
        if kept[1] <= 0:
            del self.events[raw]
            self.size -= len(raw)
        return kept[0]

    async def room(self, limit_s: float = 2.0, poll_s: float = 0.01) -> None:
        """Wait until the kept events take at most half the budget, or ``limit_s`` passed (what is
        never read, a read fewer, then leaves as newer events push it out)."""
        deadline = time.monotonic() + limit_s
        while self.size > self.budget // 2 and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)


def tick_json(epoch: float, platform: str | None = None) -> bytes:
    """A tick; naming a platform, it moves that platform's time only (events.watermark.Watermark)."""
    if platform is None:
        return orjson.dumps({"type": "tick", "ts": format_ts(epoch)})
    return orjson.dumps({"type": "tick", "ts": format_ts(epoch), "platform": platform})


def stage_agent(app: faust.App, settings: Settings, stage: str, groups: dict[str, list[Detector]],
                 stage_topics: dict[str, faust.TopicT], alerts_topic: faust.TopicT, dead_letter,  # (and the evidence stage's)
                 admit, evidence: EvidenceStage | None = None, decoded: Decoded | None = None) -> Engine:
    """One stage: an engine over the stage's detectors, with a changelogged table per detector
    (named after it, with its timers in ``<name>-timers``)."""
    detectors = groups[stage]
    sent: list = []  # changelog messages of the stage's tables, acknowledged before a batch is acked
    states = {
        name: TableState(app.Table(name, default=None, partitions=settings.partitions,
                                   schema=faust.Schema(key_serializer="json", value_serializer="json")), sent)
        for d in detectors for name in (d.name, f"{d.name}-timers")
    }
    engine = Engine(detectors, state_factory=states.__getitem__, sources=stage_sources(settings, stage, groups),
                    lateness=settings.allowed_lateness_s, replayed_buffers=True,
                    dedupe_window=settings.dedupe_window_s)
    topic = stage_topics[stage]
    topic_name = topic.get_topic_name()
    # Buffered events are not written anywhere: the stage's commits stop at the oldest record
    # still buffered, so whoever owns the partition next reads them again (see Engine).
    # A batch's table writes are acknowledged while the next batch runs (see run and Landing).
    landing = Landing(app.crash, f"stage {stage}")

    def oldest_offset(partition: int) -> int | None:
        """Where the commits stop: a record whose events are buffered, or a batch still landing."""
        offsets = (landing.hold(partition), engine.oldest_offset(partition))
        return min((offset for offset in offsets if offset is not None), default=None)

    admit.hold(topic_name, oldest_offset)
    stage_of = {d.name: name for name, members in groups.items() for d in members}
    by_name = {d.name: d for members in groups.values() for d in members}
    downstream = sorted({stage_of[name] for d in detectors for name in getattr(d, "emits", ()) if name in stage_of})
    forwarded: dict[tuple, float] = {}  # (partition, platform or None) -> the source time last forwarded downstream

    latency = metrics.Tally(metrics.LATENCY.labels(stage))  # flushed at each batch's end
    batches, state_writes = metrics.STAGE_BATCHES.labels(stage), metrics.STATE_WRITES.labels(stage)
    decodes = metrics.STAGE_DECODES.labels(stage)
    decoded_here = 0  # entries this batch decoded from their bytes (decode_once)
    outbox = Outbox()  # what this stage sends to later stages, sent once per batch
    ticked: set[int] = set()  # partitions a tick reached in this batch (forward_time)
    # partition -> the platforms whose time this batch may have moved there (None: the ticks')
    touched_here: dict[int, dict[str | None, None]] = {}
    entries = 0  # entries handled in this batch: a busy batch lingers before the next (run)
    last_decoded: tuple[bytes | None, object] = (None, None)  # see decode_once
    out_sent: list = []  # futures of a batch's outputs (alerts, stage records), acknowledged first

    def forward(partition: int) -> None:
        """Emitted events to their stages, into ``outbox`` under this partition's source."""
        source = f"stage:{stage}/{partition}"
        for name, emitted in engine.drain_emitted():
            if name in stage_of:
                value = emitted.model_dump_json().encode()
                into = set()  # the partitions it goes to: one stage record each reads it
                for key in by_name[name].keys(emitted):
                    raw_key = key.encode()
                    target = partition_of(raw_key, settings.partitions)
                    into.add(target)
                    outbox.add(stage_of[name], target, source, raw_key, value)
                if decoded is not None:
                    decoded.put(value, emitted, decoded.readers((stage_of[name], p) for p in into))

    def forward_time(partition: int, was_tick: bool) -> None:
        """This partition's source times, as ticks to every partition downstream, after what it
        emitted: a downstream stage never passes a time before this one has. One per platform
        whose time the batch moved (a platform's time is its own: events.watermark.Watermark),
        and one without a platform when its ticks moved. Once per batch: its records leave
        together at its end, so a downstream stage gets the same events either way, and the
        batch's last time is what lets it release them. For events at most once per second of
        event time; ticks always."""
        platforms = touched_here.pop(partition, {})
        if not downstream:
            return
        source = f"stage:{stage}/{partition}"
        for platform, now in moved_times(engine.watermark(partition), platforms, was_tick, forwarded, (partition,)):
            tick = tick_json(now, platform)
            for name in downstream:
                for p in range(settings.partitions):
                    outbox.add(name, p, source, None, tick)

    # partition -> {source: latest event time}: each stage partition's watermark sources, so a
    # worker that starts (after a kill) or takes a partition over goes on from them. Without
    # it, sources whose last message lies before the committed offset never speak again on a
    # finished (historical) stream, and the ordered stages' buffered events wait for good.
    watermarks = app.Table(f"{stage}-watermarks", default=None, partitions=settings.partitions,
                           schema=faust.Schema(key_serializer="json", value_serializer="json"))
    track_changelog(watermarks, sent)
    restored: set[int] = set()  # partitions whose watermark came back from the table since assignment

    def restore_watermark(partition: int) -> None:
        """Merge the stored source times into this partition's watermark (the later of each).
        Whatever was due at the stored time was released before it was stored (in the same
        batch), so the lanes' times can simply be recomputed."""
        restored.add(partition)
        stored = watermarks.get(str(partition))
        if stored:
            engine.watermark(partition).restore(stored)

    def save_watermark(partition: int) -> None:
        stored = engine.watermark(partition).dump()
        if stored["ticks"] or stored["platforms"]:
            watermarks[str(partition)] = stored

    @app.on_partitions_revoked.connect
    async def forget_partitions(*_args, **_kwargs) -> None:
        """Rebuilt from the tables on next use: another worker may own them now."""
        for p in restored:  # another worker reports them now
            try:
                metrics.BUFFERED.remove(stage, str(p))
            except KeyError:
                pass
        engine.reset()
        restored.clear()
        logged.clear()

    async def handle(message) -> None:  # noqa: ANN001 - a Faust Message or a ReadBack
        """One stage record: a batch of entries (:mod:`streams.kafka.batches`), or one event."""
        source = _header(message.headers, SOURCE_HEADER) or "unknown"
        where = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            items = record_entries(message, message.key.decode() if message.key else None)
        except ValueError as err:
            await dead_letter(DeadLetter(str(err), "worker_error", raw_text(message.value or b""), source))
            return
        nonlocal entries
        entries += len(items)
        for i, (key, value) in enumerate(items):
            await handle_entry(key, value, source, message.partition, message.offset,
                               f"{where}#{i}" if len(items) > 1 else where)

    def decode_once(value: bytes, where: str) -> tuple[object, bool]:
        """The entry's event, and whether it was decoded now: the entries of one event bound
        for several keys (``REPEAT``) share one bytes object, decoded once."""
        nonlocal last_decoded, decoded_here
        if value is last_decoded[0]:
            return last_decoded[1], False
        known = decoded.get(value) if decoded is not None else None
        if known is None:
            known = decode(value, where, stage=True)
            decoded_here += 1
            if decoded is not None and not isinstance(known, DeadLetter):
                decoded.remember(value, known)
        last_decoded = (value, known)
        return known, True

    async def handle_entry(key: str | None, value: bytes, source: str, partition: int, offset: int,
                           where: str) -> None:
        started = time.perf_counter()
        try:
            parsed, fresh = decode_once(value, where)
            if isinstance(parsed, DeadLetter):
                if fresh:  # one dead letter per event, not per key it was bound for
                    await dead_letter(parsed)
                return
            alerts = engine.process(parsed, source=source, partition=partition, key=key, offset=offset)
            for alert in alerts:
                metrics.ALERTS.labels(alert.kind).inc()
                out_sent.append(await alerts_topic.send(key=alert.alert_id.encode(), value=alert.to_json()))
            for letter in detector_failures(engine, where):
                await dead_letter(letter)
            if isinstance(parsed, Tick):
                ticked.add(partition)
            moved = touched(parsed)
            touched_here.setdefault(partition, {}).update(dict.fromkeys(moved))
            if evidence is not None:  # alert versions and this partition's time, for the evidence log
                evidence.stage_output(outbox, stage, partition, alerts, engine.watermark(partition), moved,
                                      isinstance(parsed, Tick), engine.held_from(partition))
        except Exception as err:
            log.exception("stage %s failed", stage)
            await dead_letter(DeadLetter(f"stage {stage} failed: {err!r}", "detector_error", raw_text(value), source))
        finally:
            # what the engine emitted leaves under this partition's source even when a send
            # above failed: the batch-end tick of this partition must never overtake it
            forward(partition)
            latency.observe(time.perf_counter() - started)

    # partition -> the state changes of the last batch that changed it, written (and acked)
    # before those changes go to the tables; applied again when a worker takes the partition.
    redo = app.Table(f"{stage}-redo", default=None, partitions=settings.partitions,  # values: JSON bytes
                     schema=faust.Schema(key_serializer="json", value_serializer="raw"))
    redo_sent: list = []
    # written straight to aiokafka as one record batch per partition, as the tables are: through
    # Faust's producer buffer (one message at a time, by one background task) the redo record was
    # a batch end's longest wait (session 30)
    redo_state = TableState(redo, redo_sent, raw_values=True)

    # Faust checks a table's changelog against its source topic at the first write, with the
    # consumer's metadata snapshot, which can read 0 partitions for topics created moments
    # before a rebalance (seen: a first worker's stages crashed on PartitionsMismatch for
    # minutes, and each crash acked a batch whose state was never written). The worker creates
    # the stage topic and the changelogs itself, with the same partition count: the check holds.
    for table in [state.table for state in states.values()] + [watermarks, redo]:
        table._verified_source_topics_for_partitions.add(topic_name)

    def write_redo(partition: int, changes: dict[str, list]) -> None:
        """The batch's changes for ``partition`` (table name -> its changelog messages there) as
        one redo record: parts of at most ``REDO_PART_BYTES`` (``<p>\\t<i>``), then a head
        (``<p>``) naming them. One changelog partition holds them all and Kafka keeps its order,
        so a durable head means durable parts. Nothing when the batch changed nothing here (the
        last record still holds)."""
        seq = uuid.uuid4().hex
        parts = redo_parts(states, changes, seq, REDO_PART_BYTES)
        if not parts:
            return
        redo_state.partition = partition
        for i, part in enumerate(parts):
            redo_state[f"{partition}\t{i}"] = part
        redo_state[str(partition)] = orjson.dumps({"seq": seq, "parts": len(parts)})

    def apply_redo(partition: int) -> None:
        """The partition's last redo record, applied again as pending changes: whatever part of
        that batch's table writes a kill lost is written now (the rest again, same values)."""
        changes = redo_changes(redo.get, partition)
        if changes is None:
            log.warning("stage %s/%s: redo record superseded by a partial one; not applied", stage, partition)
            return
        for name, change in changes:
            states[name].redo(change, partition)

    async def send_outputs() -> None:
        """The batch's stage records (its alerts went out as it ran), flushed."""
        _as_current(None)
        await outbox.send(stage_topics, SOURCE_HEADER, out_sent)
        await app.producer.flush()

    async def write_redo_records(last: dict[int, faust.EventT]) -> None:
        """The batch's changes as one redo record per partition (every change encoded once),
        once the last batch's table writes are acknowledged: a partition's record replaces the
        last one, which must not go while that batch's writes could still be lost."""
        await landing.wait()
        redo_state.drop()  # what a failed batch end left half built
        encoded = {name: state.encode() for name, state in states.items()}
        for p in last:
            write_redo(p, {name: messages.get(p, []) for name, messages in encoded.items()})
        await write_back([redo_state], lambda p: _as_current(last[p]), kafka_producer(app))
        _as_current(None)

    async def write_tables(last: dict[int, faust.EventT]) -> None:
        """The batch's changes to the tables (a changelog message per key) and its source times."""
        for p, event in last.items():
            _as_current(event)
            save_watermark(p)
            metrics.BUFFERED.labels(stage, str(p)).set(engine.buffered(p)[0])
        state_writes.inc(await write_back(states.values(), lambda p: _as_current(last[p]), kafka_producer(app)))
        _as_current(None)

    def land(handled: list) -> None:
        """The batch's table writes (in ``sent``) left to land while the next batch runs."""
        # what the commits would have waited for: its first records, and its releases
        hold = {tp.partition: offset for tp, offset in first_offsets(handled).items() if tp.topic == topic_name}
        for p, offset in engine.settle().items():
            hold[p] = min(offset, hold.get(p, offset))
        landing.add(list(sent), hold)
        sent.clear()

    async def run(stream: faust.StreamT) -> None:
        """Events in batches. A batch's outputs (alerts, forwarded events, dead letters) are
        acked first; then its state changes per partition as one redo record, acked too (once
        the last batch's table writes landed); only then are the changes written to the tables
        (each key its own changelog message), acknowledged while the next batch runs
        (:class:`Landing`; see :func:`streams.kafka.state.delivered`: Faust's flush does not
        wait for them), the commits held at the batch until they are. So after a kill the state
        holds whole batches (the last one completed from its redo record) whose outputs are all
        out: the seen-set may then skip re-read events safely (issue 13)."""
        nonlocal entries, decoded_here
        async for batch in stream.take_events(settings.stage_batch, within=settings.stage_batch_wait_s):
            last: dict[int, faust.EventT] = {}  # partition -> its latest event in this batch
            handled: list = []  # the batch's messages the stage handled (a hole read back included)
            try:
                for event in batch:
                    _as_current(event)
                    partition = event.message.partition
                    last[partition] = event
                    if partition not in restored:
                        for state in states.values():
                            state.partition = partition
                        apply_redo(partition)
                        restore_watermark(partition)
                        engine.open(partition)
                        log.info("stage %s/%s taken: %s buffered events read back from the tables, watermark %s",
                                 stage, partition, engine.buffered(partition)[1], watermark_text(partition))
                    for state in states.values():
                        state.partition = partition
                    await admit.each(event.message, handled, handle)  # stopped within a record: it is read again
            finally:  # even when stopping (cancelled): Faust acks the batch's events anyway
                latency.flush()
                for p in last:
                    forward_time(p, p in ticked)
                ticked.clear()
                await finish_batch(app, admit, handled, (f"stage {stage}: a batch's outputs", out_sent, send_outputs),
                                   [(f"stage {stage}: a batch's redo record", redo_sent, lambda: write_redo_records(last)),
                                    (f"stage {stage}: a batch's state", [], lambda: write_tables(last))],
                                   drop=drop_batch)
            land(handled)
            batches.inc()
            decodes.inc(decoded_here)
            decoded_here = 0
            # Under load, let records gather so the next batch is bigger: a hot key's record is then
            # written (encoded, copied into the redo record, sent) once for more events. Not after
            # a batch full of records (the next one is waiting already), nor after a light one, so
            # low-rate latency keeps the short batch wait.
            busy, entries = entries >= settings.stage_batch and len(batch) < settings.stage_batch, 0
            if busy and settings.stage_busy_linger_s > 0:
                await asyncio.sleep(settings.stage_busy_linger_s)

    def drop_batch() -> None:
        outbox.entries.clear()
        for state in states.values():
            state.drop()

    logged: dict[int, int] = {}  # partition -> buffered count last logged

    def watermark_text(partition: int) -> str:
        value = engine.watermark(partition).value
        return format_ts(value) if value > -math.inf else "none"

    @app.timer(10.0)
    async def log_buffered() -> None:
        """The buffered count of each partition when it changed: in a worker's log, the last line
        before it stopped and the "taken" line of the next owner must agree (issue 13)."""
        for p in sorted(restored):
            count = engine.buffered(p)[0]
            if logged.get(p) != count:
                logged[p] = count
                log.info("stage %s/%s: %s events buffered, watermark %s", stage, p, count, watermark_text(p))

    run.__name__ = f"stage_{stage}"
    app.agent(topic, name=f"stage-{stage}")(run)
    return engine
