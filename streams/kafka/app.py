"""The Faust worker: thin agents around the engine core.

Two kinds of agent, both boring on purpose:

* ``ingest`` reads the contract's input topics, validates each message (bad ones go to
  ``deadletter``), and forwards each valid event once per key to the topic of every stage that
  takes its type, with the source ``topic/partition`` in a header. Ticks are forwarded to every
  partition of those stage topics.
* one ``stage`` agent per stage (see :func:`streams.registry.stages`: the three platform-keyed
  detectors share one) reads its stage topic in batches and runs an :class:`Engine` over the
  stage's detectors, with Faust tables (changelogged once per batch, see :mod:`streams.kafka.state`)
  as state; alerts go to ``alerts``.

A stage partition's event time is the minimum over its source partitions (see
``streams.engine``), so alerts do not depend on how Kafka interleaves the sources.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
import weakref

import faust
import orjson
from faust.streams import _current_event

from events import INPUT_TOPICS, DeadLetter, Detector, Tick, decode, format_ts, raw_text
from streams import metrics
from streams.outputs.alertmanager import Alertmanager
from streams.outputs.api import Sources, secure_headers, server_options
from streams.outputs.routes import route_table
from streams.engine import Engine
from streams.kafka.evidence import EvidenceStage, evidence_topic_names, export_from_kafka
from streams.local import detector_failures
from streams.outputs.delivery import make_delivery
from streams.registry import build_detectors, routes, stage_sources, stages
from streams.settings import Settings, bootstrap_servers
from streams.kafka.state import TableState
from streams.kafka.view import ClusterView

log = logging.getLogger("stormwatch.worker")
SOURCE_HEADER = "stormwatch-source"
REDO_PART_BYTES = 256_000  # one redo message at most (Kafka's default limit is about 1 MB)


def stage_topic_name(settings: Settings, stage: str) -> str:
    return settings.topic(f"{settings.app_id}-stage-{stage}")


def topic_names(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes, besides Faust's own changelogs."""
    topics = [stage_topic_name(settings, name) for name in stages(build_detectors(settings))]
    return ([settings.topic(t) for t in (*INPUT_TOPICS, "alerts", "deadletter")] + topics
            + evidence_topic_names(settings))


def _header(headers: object, name: str) -> str | None:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for key, value in items:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class Progress:
    """Per partition, the offset up to which the agents handled every message, to notice
    messages that never reach an agent: gaps and stalls.

    faust-streaming sometimes fetches messages and never hands them to the agent (seen in the
    restart tests and in issue 13: a single event missing in the middle of a partition, after
    which a stage's watermark or its output is wrong for good). Two places in its consumer do
    this (``faust/transport/consumer.py``, 0.15.3): ``_drain_messages`` hands a message to the
    streams with ``wait_first(callback(message), suspend_flow.wait())`` and marks it read even
    when a rebalance's ``stop_flow`` cancelled the hand-over; and it drops fetched messages
    below the read offset, which a fetch already in flight moves past a seek. Faust's commit
    then skips a missing message at the head of the acked offsets (``_new_offset`` tolerates a
    hole of one, and any hole when nothing was committed yet), so the loss outlives a restart.

    Input and stage topics are neither compacted nor transactional, so their offsets are
    contiguous. :meth:`admit` checks each message against the contiguous mark: past it, a gap,
    the partition is re-read from the first missing offset (again every ``GAP_RETRY_S`` while
    it lasts; after ``MAX_REREADS`` the mark moves on). The message is handled all the same:
    holding messages back until a re-read arrived stalled whole partitions when it did not. For the re-read to arrive, Faust's read-offset rule is turned off (see
    :func:`_guard_consumer`). At or below it, a message this
    worker already handled, skipped. :meth:`commit_cap` keeps Faust's commits at the mark, so a
    worker killed meanwhile restarts before the hole. :meth:`stuck` is the older watchdog for a
    partition with no progress at all (a partition Faust left paused is never fetched): its
    position or end offset past the mark, no progress for ``STALL_S``: re-read from the mark.
    """

    STALL_S = 20.0
    GAP_RETRY_S = 5.0
    MAX_REREADS = 24  # two minutes: taking a hole as real loses whatever was there

    def __init__(self) -> None:
        self.done: dict = {}  # TP -> every offset up to this one was handled (or committed at assignment)
        self.behind: dict = {}  # TP -> (contiguous mark, since when it has been behind)
        self.gaps: dict = {}  # TP -> (first missing offset, when last re-read, re-reads so far)
        self.ahead: dict = {}  # TP -> the highest offset handled past a gap

    def admit(self, tp, offset: int, now: float) -> tuple[bool, int | None]:  # noqa: ANN001 - a Faust TP
        """Whether to handle the message at ``offset``, and the offset to re-read ``tp`` from
        (None: no re-read now). A message past a gap is handled too: a re-read that never
        arrives (seen) must not hold the partition back; the re-read's duplicates are dropped
        by the engine's seen-set."""
        done = self.done.get(tp)
        if done is None or offset == done + 1:
            self.done[tp] = offset
            if self.ahead.get(tp, -1) <= offset:
                self.ahead.pop(tp, None)
                self.gaps.pop(tp, None)
            return True, None
        if offset <= done:
            return False, None  # handled here already: a re-read, or a fetch from before a re-read
        self.ahead[tp] = max(self.ahead.get(tp, offset), offset)
        first, last, tries = self.gaps.get(tp, (done + 1, -math.inf, 0))
        if first != done + 1:
            first, last, tries = done + 1, -math.inf, 0
        if tries >= self.MAX_REREADS:  # the re-reads never came: go on from what was handled
            log.error("%s: offsets %s-%s missing after %s re-reads; going on", tp, first, offset - 1, tries)
            self.done[tp] = self.ahead.pop(tp)
            self.gaps.pop(tp, None)
            return True, None
        if now - last < self.GAP_RETRY_S:
            return True, None  # a re-read is under way
        self.gaps[tp] = (first, now, tries + 1)
        return True, first

    def mark(self, message) -> None:  # noqa: ANN001 - a Faust Message
        """Record a message handled with no gap check (tests, and code that cannot re-read)."""
        self.done[message.tp] = max(message.offset, self.done.get(message.tp, message.offset))

    def commit_cap(self, tp) -> int | None:  # noqa: ANN001
        """The highest offset Faust may commit for ``tp`` (next to read): past the mark only
        what the agents handled contiguously. None for partitions no agent reads."""
        done = self.done.get(tp)
        return None if done is None else done + 1

    def assigned(self, committed: dict) -> None:
        """A new assignment: the group's committed offsets (next to read) are where each
        partition starts. Read before the streams resume, because Faust can commit messages it
        never handed over (seen here), so a later committed offset is not proof of handling."""
        self.done = {tp: offset - 1 for tp, offset in committed.items()}
        self.behind = {}
        self.gaps = {}
        self.ahead = {}

    def stuck(self, positions: dict, now: float) -> dict:
        """Stuck partitions and the offset to re-read them from; ``positions``: per partition the
        consumer's position or the partition's end offset, whichever is further."""
        found = {}
        for tp, position in positions.items():
            done = self.done.get(tp)
            if done is None or position <= done + 1:
                self.behind.pop(tp, None)
                continue
            last, since = self.behind.setdefault(tp, (done, now))
            if last != done:
                self.behind[tp] = (done, now)  # progress: behind only because of a backlog
            elif now - since >= self.STALL_S:
                found[tp] = done + 1
                self.behind[tp] = (done, now)  # give the re-read a whole period
        return found


class _NoReadOffsets(dict):
    """Faust's read offsets, always read as unknown. Its fetch loop drops a fetched message
    below the partition's read offset, and a fetch in flight moves that offset past a seek
    back, so a re-read was dropped (seen in the crash test: the same gap reported until the
    stall watchdog, and lost after it). Read as unknown, every fetched message reaches the
    streams, and :class:`Progress` skips the ones already handled. It also stops Faust's gap
    records, with which it commits over holes in the fetched offsets."""

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        return None


def _guard_consumer(consumer, progress: Progress) -> None:  # noqa: ANN001 - a Faust consumer
    """Once per consumer, at the first assignment (before Faust starts its fetch loop, which
    reads ``_read_offset`` through a bound method): read offsets as unknown (see
    :class:`_NoReadOffsets`), and keep Faust's commits of a partition at most at the agents'
    contiguous mark (see :class:`Progress`), so a message Faust never handed over is not
    committed past and a restarted worker reads it."""
    if getattr(consumer, "_stormwatch_capped", False):
        return
    consumer._read_offset = _NoReadOffsets(consumer._read_offset)
    faust_new_offset = consumer._new_offset

    def new_offset(tp):  # noqa: ANN001, ANN202
        offset = faust_new_offset(tp)
        cap = progress.commit_cap(tp)
        if offset is None or cap is None or offset <= cap:
            return offset
        if cap <= (consumer._committed_offset.get(tp) or -1):
            return None  # nothing new to commit
        return cap

    consumer._new_offset = new_offset
    consumer._stormwatch_capped = True


class _GroupOffsets:
    """The consumer group's committed offsets, read with kafka-python's admin client."""

    def __init__(self, settings: Settings) -> None:
        self.bootstrap = bootstrap_servers(settings.broker)
        self.group = settings.app_id
        self.admin = None

    async def fetch(self) -> dict:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._fetch)
        except Exception:  # the broker is busy or gone: the watchdog waits for the next round
            log.debug("cannot read the group's committed offsets", exc_info=True)
            return {}

    def _fetch(self) -> dict:
        if self.admin is None:
            from kafka import KafkaAdminClient

            self.admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.group}-watchdog")
        offsets = self.admin.list_group_offsets(self.group)[self.group]
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _as_current(event: faust.EventT | None) -> None:
    """Make ``event`` the current event of this task: Faust writes a table (its changelog
    partition and its RocksDB store) for the current event's partition. ``take_events`` reads
    the stream in another task, so the agent sets it itself. Only the task-local variable is
    set; the stream's own ``current_event`` belongs to that other task."""
    _current_event.set(weakref.ref(event) if event is not None else None)


def tick_json(epoch: float) -> bytes:
    return orjson.dumps({"type": "tick", "ts": format_ts(epoch)})


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or Settings()
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        producer_linger=settings.producer_linger_s,
        # Only Stormwatch's own routes: Faust's /router, /table, /graph and statistics pages list
        # raw detector state with no token. Every response gets the API's security headers.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        web_application_options={"middlewares": [secure_headers]},
    )
    # Faust builds its aiohttp runner with no client time limits and has no setting for them.
    app.web._runner._kwargs.update(server_options(settings.web_timeout_s))
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    input_names = [settings.topic(t) for t in INPUT_TOPICS]
    inputs = app.topic(*input_names, **raw)
    alerts_topic = app.topic(settings.topic("alerts"), **raw)
    deadletter_topic = app.topic(settings.topic("deadletter"), **raw)
    groups = stages(build_detectors(settings))
    stage_topics = {name: app.topic(stage_topic_name(settings, name), partitions=settings.partitions, **raw)
                    for name in groups}
    takers, fed_by = routes(settings, groups)

    progress = Progress()

    async def admit(message) -> bool:  # noqa: ANN001 - a Faust Message
        """Whether an agent handles ``message``: not when it was handled already; past a gap,
        the partition is also re-read from the gap (see :class:`Progress`)."""
        handle, reread = progress.admit(message.tp, message.offset, time.monotonic())
        if reread is not None:
            metrics.GAPS_REREAD.inc()
            log.warning("%s/%s: got offset %s, expected %s: re-reading from %s", message.topic, message.partition,
                        message.offset, reread, reread)
            try:  # resumed as the watchdog does: a seek alone was not always fetched (crash test)
                app.consumer.resume_partitions({message.tp})
                await app.consumer.seek(message.tp, reread)
            except Exception:  # revoked meanwhile: its next owner starts from the capped commit
                log.warning("cannot re-read %s/%s", message.topic, message.partition, exc_info=True)
        return handle

    async def dead_letter(letter: DeadLetter) -> None:
        metrics.DEADLETTERS.labels(letter.reason).inc()
        await deadletter_topic.send(value=orjson.dumps(letter.to_record()))

    evidence = EvidenceStage(app, settings, list(groups), admit) if settings.evidence.worker else None

    @app.agent(inputs, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            if not await admit(message):
                continue
            source = f"{message.topic}/{message.partition}"
            metrics.EVENTS.labels(message.topic).inc()
            try:
                parsed = decode(event.value or b"", f"{source}@{message.offset}", now=time.time(),
                                max_future_s=settings.max_future_s)
                if isinstance(parsed, DeadLetter):
                    await dead_letter(parsed)
                    continue
                headers = {SOURCE_HEADER: source.encode()}
                if isinstance(parsed, Tick):
                    for name in fed_by.get(message.topic, ()):
                        for p in range(settings.partitions):
                            await stage_topics[name].send(value=event.value, partition=p, headers=headers)
                    if evidence is not None:
                        await evidence.input_tick(event.value, source)
                    continue
                for name, members in takers.get(parsed.type, {}).items():
                    for key in sorted({k for d in members for k in d.keys(parsed)}):
                        await stage_topics[name].send(key=key.encode(), value=event.value, headers=headers)
                if evidence is not None:
                    await evidence.input_event(parsed, event.value, source)
            except Exception as err:  # a bad message must never stop the agent
                log.exception("ingest failed on %s", source)
                await dead_letter(DeadLetter(f"ingest failed: {err!r}", "worker_error", raw_text(event.value or b""),
                                             source))

    engines = {name: _stage_agent(app, settings, name, groups, stage_topics, alerts_topic, dead_letter, admit, evidence)
               for name in groups}
    orders = next((engine for engine in engines.values() if "orders" in engine.by_name), None)
    view = ClusterView(settings.view_horizon_s)

    def now() -> float:
        """The ledger's event time here; a worker that owns none of its partitions goes by the alerts."""
        local = max((w.value for w in orders.watermarks.values()), default=-math.inf) if orders else -math.inf
        return local if local > -math.inf else view.latest_ts

    sources = Sources(alerts=view.alerts, ledger=view.ledger, now=now)

    @app.task
    async def follow_view() -> None:
        """The API's view of every platform (see :mod:`streams.kafka.view`)."""
        topics = [alerts_topic.get_topic_name()]
        if orders is not None:  # STORMWATCH_DETECTORS may leave the ledger out
            topics.append(orders.by_name["orders"].state.table.changelog_topic.get_topic_name())
        await view.follow(bootstrap_servers(settings.broker), *topics)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    delivery = make_delivery(
        settings, lambda record: asyncio.ensure_future(deadletter_topic.send(value=orjson.dumps(record))),
        str(settings.data_dir / f"{settings.app_id}-webhooks.sqlite"))
    alertmanager = Alertmanager(settings.alertmanager) if settings.alertmanager.url else None
    outputs = [o for o in (delivery, alertmanager) if o is not None]
    if outputs:
        @app.task
        async def start_outputs() -> None:
            for output in outputs:
                output.start()

        @app.agent(alerts_topic, name="deliver")
        async def deliver(stream: faust.StreamT) -> None:
            """Queue each alert version for webhooks and Alertmanager; sending happens in the background."""
            async for event in stream.events():
                if not await admit(event.message):
                    continue
                try:
                    alert = orjson.loads(event.value)
                    for output in outputs:
                        output.submit(alert)
                except Exception:  # a malformed record on the alerts topic must not stop delivery
                    log.exception("cannot queue an alert for delivery")

    if settings.tick_interval_s > 0:
        @app.timer(settings.tick_interval_s)
        async def wall_clock_tick() -> None:
            """Advance event time with no traffic, so deadlines fire on a quiet live stream."""
            value = tick_json(time.time())
            for name in input_names:
                for p in range(settings.partitions):
                    await app.topic(name, **raw).send(value=value, partition=p)

    consumed = set(input_names) | {t.get_topic_name() for t in stage_topics.values()}
    if outputs:
        consumed.add(alerts_topic.get_topic_name())

    group_offsets = _GroupOffsets(settings)
    lag_labels: set[tuple[str, str]] = set()  # (topic, partition) the lag gauge reports

    @app.timer(5.0)
    async def measure_lag() -> None:
        """Consumer lag per assigned partition (the stormwatch_consumer_lag gauge), and the
        watchdog for partitions whose fetched messages never reach an agent (see :class:`Progress`)."""
        consumer = app.consumer
        positions = {}
        assignment = consumer.assignment()
        assigned = {(tp.topic, str(tp.partition)) for tp in assignment}
        for labels in lag_labels - assigned:  # revoked: another worker reports it now
            metrics.CONSUMER_LAG.remove(*labels)
        lag_labels.clear()
        lag_labels.update(assigned)
        for tp in assignment:
            try:
                position, highwater = await consumer.position(tp), consumer.highwater(tp)
            except Exception:  # not fetched yet, or being revoked: try again next round
                continue
            if position is not None and highwater is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))
            if position is not None and tp.topic in consumed:
                positions[tp] = position
        if app.in_recovery or app.rebalancing:
            return  # Faust pauses and seeks partitions itself meanwhile
        try:  # the broker's end offsets: a partition Faust left paused is never fetched at all
            ends = await consumer.highwaters(*positions)
        except Exception:  # the broker is busy: positions alone this round
            ends = {}
        positions = {tp: max(position, ends.get(tp) or 0) for tp, position in positions.items()}
        for tp, offset in progress.stuck(positions, time.monotonic()).items():
            log.warning("%s/%s: messages before offset %s but no agent handled offset %s for %.0f s: "
                        "resuming it and re-reading from there", tp.topic, tp.partition, positions[tp], offset,
                        Progress.STALL_S)
            metrics.WATCHDOG_REREADS.inc()
            consumer.resume_partitions({tp})
            await consumer.seek(tp, offset)

    @app.on_partitions_assigned.connect
    async def remember_start(_app, assigned, **_kwargs) -> None:  # noqa: ANN001 - Faust's signal signature
        """Where each partition starts, for the watchdog (see :meth:`Progress.assigned`): the
        group's committed offset, or for a partition the group never committed (a new group, a
        new topic) its earliest offset, where ``auto_offset_reset=earliest`` starts reading."""
        start = await group_offsets.fetch()
        fresh = [tp for tp in assigned if tp.topic in consumed and (tp.topic, tp.partition) not in start]
        if fresh:
            try:
                earliest = await app.consumer.earliest_offsets(*fresh)
            except Exception:  # the broker is busy: those partitions go unwatched until the next assignment
                log.debug("cannot read earliest offsets", exc_info=True)
                earliest = {}
            start.update({(tp.topic, tp.partition): offset for tp, offset in earliest.items() if offset is not None})
        progress.assigned(start)
        _guard_consumer(app.consumer, progress)

    export = (lambda alert_id: export_from_kafka(settings, alert_id)) if evidence is not None else None
    app.web.web_app.router.add_routes(route_table(settings.api_tokens, sources, health=dict, export=export))

    return app


def _stage_agent(app: faust.App, settings: Settings, stage: str, groups: dict[str, list[Detector]],
                 stage_topics: dict[str, faust.TopicT], alerts_topic: faust.TopicT, dead_letter,
                 admit, evidence: EvidenceStage | None = None) -> Engine:
    """One stage: an engine over the stage's detectors, with a changelogged table per detector
    (named after it, with its timers in ``<name>-timers``)."""
    detectors = groups[stage]
    states = {
        name: TableState(app.Table(name, default=None, partitions=settings.partitions,
                                   schema=faust.Schema(key_serializer="json", value_serializer="json")))
        for d in detectors for name in (d.name, f"{d.name}-timers")
    }
    engine = Engine(detectors, state_factory=states.__getitem__, sources=stage_sources(settings, stage, groups),
                    lateness=settings.allowed_lateness_s, durable_buffers=True,
                    dedupe_window=settings.dedupe_window_s)
    topic = stage_topics[stage]
    stage_of = {d.name: name for name, members in groups.items() for d in members}
    by_name = {d.name: d for members in groups.values() for d in members}
    downstream = sorted({stage_of[name] for d in detectors for name in getattr(d, "emits", ()) if name in stage_of})
    forwarded: dict[int, float] = {}  # partition -> the source time last forwarded downstream

    async def forward(partition: int, was_tick: bool) -> None:
        """Emitted events to their stages, then this partition's source time (as a tick) to every
        partition downstream: a downstream stage never passes a time before this one has."""
        headers = {SOURCE_HEADER: f"stage:{stage}/{partition}".encode()}
        for name, emitted in engine.drain_emitted():
            if name in stage_of:
                for key in by_name[name].keys(emitted):
                    await stage_topics[stage_of[name]].send(key=key.encode(),
                                                            value=emitted.model_dump_json().encode(), headers=headers)
        if not downstream:
            return
        now = min(engine.watermark(partition).latest.values())
        last = forwarded.get(partition, -math.inf)
        if now == -math.inf or now <= last or (not was_tick and now < last + 1.0):
            return  # events forward at most once per second of event time; ticks always
        forwarded[partition] = now
        for name in downstream:
            for p in range(settings.partitions):
                await stage_topics[name].send(value=tick_json(now), partition=p, headers=headers)

    # partition -> {source: latest event time}: each stage partition's watermark sources, so a
    # worker that starts (after a kill) or takes a partition over goes on from them. Without
    # it, sources whose last message lies before the committed offset never speak again on a
    # finished (historical) stream, and the ordered stages' buffered events wait for good.
    watermarks = app.Table(f"{stage}-watermarks", default=None, partitions=settings.partitions,
                           schema=faust.Schema(key_serializer="json", value_serializer="json"))
    restored: set[int] = set()  # partitions whose watermark came back from the table since assignment

    def restore_watermark(partition: int) -> None:
        """Merge the stored source times into this partition's watermark (the later of each).
        Whatever was due at the stored time was released before it was stored (in the same
        batch), so the value can simply be recomputed."""
        restored.add(partition)
        stored = watermarks.get(str(partition))
        if not stored:
            return
        wm = engine.watermark(partition)
        for source, ts in stored.items():
            if source in wm.latest and ts > wm.latest[source]:
                wm.latest[source] = ts
        wm.value = max(wm.value, min(wm.latest.values()) - wm.lateness)

    def save_watermark(partition: int) -> None:
        latest = {source: ts for source, ts in engine.watermark(partition).latest.items() if ts > -math.inf}
        if latest:
            watermarks[str(partition)] = latest

    @app.on_partitions_revoked.connect
    async def forget_partitions(*_args, **_kwargs) -> None:
        """Rebuilt from the tables on next use: another worker may own them now."""
        engine.reset()
        restored.clear()

    async def handle(event: faust.EventT) -> None:
        message = event.message
        if not await admit(message):
            return
        started = time.perf_counter()
        source = _header(event.headers or message.headers, SOURCE_HEADER) or "unknown"
        where = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            parsed = decode(event.value or b"", where)
            if isinstance(parsed, DeadLetter):
                await dead_letter(parsed)
                return
            key = message.key.decode() if message.key else None
            alerts = engine.process(parsed, source=source, partition=message.partition, key=key)
            for alert in alerts:
                metrics.ALERTS.labels(alert.kind).inc()
                await alerts_topic.send(key=alert.alert_id.encode(), value=alert.to_json())
            for letter in detector_failures(engine, where):
                await dead_letter(letter)
            await forward(message.partition, isinstance(parsed, Tick))
            if evidence is not None:  # alert versions and this partition's time, for the evidence log
                await evidence.stage_output(stage, message.partition, alerts,
                                            min(engine.watermark(message.partition).latest.values()),
                                            isinstance(parsed, Tick))
        except Exception as err:
            log.exception("stage %s failed", stage)
            await dead_letter(DeadLetter(f"stage {stage} failed: {err!r}", "detector_error",
                                         raw_text(event.value or b""), source))
        finally:
            metrics.LATENCY.labels(stage).observe(time.perf_counter() - started)

    # partition -> the state changes of the last batch that changed it, written (and acked)
    # before those changes go to the tables; applied again when a worker takes the partition.
    redo = app.Table(f"{stage}-redo", default=None, partitions=settings.partitions,
                     schema=faust.Schema(key_serializer="json", value_serializer="json"))

    # Faust checks a table's changelog against its source topic at the first write, with the
    # consumer's metadata snapshot, which can read 0 partitions for topics created moments
    # before a rebalance (seen: a first worker's stages crashed on PartitionsMismatch for
    # minutes, and each crash acked a batch whose state was never written). The worker creates
    # the stage topic and the changelogs itself, with the same partition count: the check holds.
    for table in [state.table for state in states.values()] + [watermarks, redo]:
        table._verified_source_topics_for_partitions.add(topic.get_topic_name())

    def write_redo(partition: int) -> bool:
        """The batch's changes for ``partition`` as one redo record: parts of at most
        ``REDO_PART_BYTES`` (``<p>\\t<i>``), then a head (``<p>``) naming them. One changelog
        partition holds them all and Kafka keeps its order, so a durable head means durable
        parts. False when the batch changed nothing here (the last record still holds)."""
        seq = uuid.uuid4().hex
        parts: list[list] = [[]]
        size = 0
        for name, state in states.items():
            for change in state.changes(partition):
                length = len(orjson.dumps(change))
                if size + length > REDO_PART_BYTES and parts[-1]:
                    parts.append([])
                    size = 0
                parts[-1].append([name, *change])
                size += length
        if not parts[0]:
            return False
        for i, part in enumerate(parts):
            redo[f"{partition}\t{i}"] = {"seq": seq, "changes": part}
        redo[str(partition)] = {"seq": seq, "parts": len(parts)}
        return True

    def apply_redo(partition: int) -> None:
        """The partition's last redo record, applied again as pending changes: whatever part of
        that batch's table writes a kill lost is written now (the rest again, same values)."""
        head = redo.get(str(partition))
        if not head:
            return
        parts = [redo.get(f"{partition}\t{i}") for i in range(head["parts"])]
        if any(part is None or part["seq"] != head["seq"] for part in parts):
            # the next batch's parts came back without its head: that batch never reached the
            # tables, and this one's writes were acked before it began
            log.warning("stage %s/%s: redo record %s superseded by a partial one; not applied", stage, partition,
                        head["seq"])
            return
        for part in parts:
            for name, *change in part["changes"]:
                states[name].redo(change, partition)

    async def run(stream: faust.StreamT) -> None:
        """Events in batches. A batch's outputs (alerts, forwarded events, dead letters) are
        acked first; then its state changes per partition as one redo record, acked too; only
        then are the changes written to the tables (each key its own changelog message). Faust
        acks the events after that, and commits only after a producer flush. So after a kill
        the state holds whole batches (the last one completed from its redo record) whose
        outputs are all out: the seen-set may then skip re-read events safely (issue 13)."""
        async for batch in stream.take_events(settings.stage_batch, within=settings.stage_batch_wait_s):
            last: dict[int, faust.EventT] = {}  # partition -> its latest event in this batch
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
                    for state in states.values():
                        state.partition = partition
                    await handle(event)
            finally:
                try:
                    _as_current(None)
                    await app.producer.flush()  # the batch's outputs first
                    written = False
                    for p, event in last.items():
                        _as_current(event)
                        written = write_redo(p) or written
                    _as_current(None)
                    if written:
                        await app.producer.flush()
                finally:  # even when stopping (cancelled): Faust acks the batch's events anyway
                    for state in states.values():
                        state.flush(lambda p: _as_current(last[p]))
                    for p, event in last.items():
                        _as_current(event)
                        save_watermark(p)
                    _as_current(None)

    run.__name__ = f"stage_{stage}"
    app.agent(topic, name=f"stage-{stage}")(run)
    return engine
