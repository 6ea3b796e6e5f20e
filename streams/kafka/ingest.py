"""The ingest: the contract's input topics, read with a plain aiokafka consumer, each message
validated and routed to the stages (issue 15).

The ingest holds no state: no table, nothing to restore, no reason to share the stages'
partition assignment. Read through a Faust agent, each input message cost the worker Faust's
machinery per message (a queue, an event, a task or two: 67-72 µs per event against about 1 µs
for aiokafka's ``getmany``, ``benchmarks.faust_floor``, session 19), more than validating it,
and Faust's consumer can fetch a message and never hand it over (:mod:`streams.kafka.watchdog`).
So the ingest reads in a consumer group of its own, ``<app_id>-ingest``:

* a batch is ``getmany``'s messages (at most ``stage_batch``); each is validated and routed into
  one :class:`~streams.kafka.batches.Outbox`, sent as the Faust agent sent it;
* the batch's offsets are committed once Kafka acknowledged its stage records and dead letters:
  at least once, and a message read twice (a crash between the two, a rebalance) is dropped by
  the stages' seen-set, as every re-read always was;
* a rebalance waits for the batch in hand (:meth:`Ingest.on_partitions_revoked`), so its commit
  lands before the partitions move;
* a partition this group never committed starts where the worker's Faust group committed it,
  where one did (a worker from before this module: :meth:`Ingest.carry_over`), else at the
  earliest offset;
* it stops before Faust stops the producer (:meth:`Ingest.stop`);
* before each read it waits for the worker's stages (``ready``: ``Decoded.room``), which it
  would otherwise outrun by the whole backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from streams import metrics
from streams.kafka.batches import Outbox
from streams.kafka.state import delivered
from streams.kafka.watchdog import GroupOffsets
from streams.settings import Settings, bootstrap_servers

log = logging.getLogger("stormwatch.worker")

CARRY_TRIES = 5  # reads of the groups' offsets before the ingest starts without carrying them over
Route = Callable[[object, Outbox, list], Awaitable[None]]  # (message, outbox, sent futures)


class Ingest(ConsumerRebalanceListener):
    """Reads ``topics`` and hands each message to ``route``; see the module docstring.
    ``send(outbox, sent)`` sends an outbox's records, their futures into ``sent``; ``crash(err)``
    stops the worker when a batch could not reach Kafka (it is then read again after the restart);
    ``ready()``, when given, is awaited before each read (the stages' pace: ``Decoded.room``).
    ``session_s`` and ``heartbeat_s``: the group's session, as long as the Faust consumer's, so a
    busy event loop does not cost the ingest its membership sooner than it costs the stages theirs."""

    def __init__(self, settings: Settings, topics: list[str], route: Route,
                 send: Callable[[Outbox, list], Awaitable[object]],
                 crash: Callable[[BaseException], Awaitable[None]],
                 ready: Callable[[], Awaitable[None]] | None = None,
                 session_s: float = 60.0, heartbeat_s: float = 3.0) -> None:
        self.settings, self.topics, self.route, self.send, self.crash = settings, topics, route, send, crash
        self.ready = ready
        self.session_ms, self.heartbeat_ms = int(session_s * 1000), int(heartbeat_s * 1000)
        self.group = f"{settings.app_id}-ingest"
        self.lock = asyncio.Lock()  # held by a batch from its first message to its commit
        self.consumer: AIOKafkaConsumer | None = None
        self.lag = metrics.ConsumerLag()
        self.start_at: dict[TopicPartition, int] = {}  # the Faust group's offsets this group lacks (carry_over)
        self.carried: dict[TopicPartition, int] = {}  # sought to at an assignment, committed with the next batch
        self.started = self.stopping = False
        self.finished = asyncio.Event()

    def _consumer(self, **options: object) -> AIOKafkaConsumer:
        """The group's consumer; the broker holds its fetches as long as the stages' (see
        :mod:`streams.kafka.consumer`; aiokafka's default is 0.5 s)."""
        return AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(self.settings.broker), group_id=self.group,
                                client_id=self.group, enable_auto_commit=False,
                                fetch_max_wait_ms=self.settings.fetch_wait_ms, **options)

    async def run(self) -> None:
        s = self.settings
        self.started = True
        try:
            await self.carry_over()
            if self.stopping:
                return
            consumer = self.consumer = self._consumer(
                auto_offset_reset="earliest", max_poll_records=s.stage_batch,
                session_timeout_ms=self.session_ms, heartbeat_interval_ms=self.heartbeat_ms)
            await consumer.start()
            try:
                consumer.subscribe(self.topics, listener=self)
                wait_ms = max(1, int(s.stage_batch_wait_s * 1000))
                while not self.stopping:
                    if self.ready is not None:
                        await self.ready()
                    batch = await consumer.getmany(timeout_ms=wait_ms, max_records=s.stage_batch)
                    if batch or self.carried:
                        await self.handle(batch)
            finally:
                await consumer.stop()
        finally:
            self.finished.set()

    async def stop(self, timeout: float = 150.0) -> None:
        """Called before Faust stops its producer (``on_before_shutdown``): the batch in hand is
        sent and committed, and no more is read (read on, its sends failed once the producer
        was gone and the worker crashed at every graceful stop)."""
        self.stopping = True
        if not self.started:
            return
        try:
            await asyncio.wait_for(self.finished.wait(), timeout)
        except TimeoutError:
            log.warning("ingest: still not stopped after %.0f s; what it has not committed is read again", timeout)

    async def carry_over(self) -> None:
        """Which input partitions start where the worker's Faust group committed them: those it
        committed and this group never did, so a worker from before this module goes on where it
        stopped instead of reading the input's whole retention again. Read before joining; the
        partitions are sought to when assigned (:meth:`on_partitions_assigned`) and committed,
        as a member of the group, with the next batch. Two workers of a new version starting
        within the same seconds may each seek one back to the old offset: what the other read
        meanwhile is read again (dropped as copies), nothing is skipped."""
        groups = [GroupOffsets(self.settings), GroupOffsets(self.settings, self.group)]
        try:
            for attempt in range(CARRY_TRIES):
                try:  # both read, or neither: this group's offsets unread must never look like none
                    old, mine = [await group.read() for group in groups]
                    break
                except Exception as err:
                    if attempt + 1 == CARRY_TRIES:
                        log.error("ingest: cannot read the committed offsets (%r); a partition this group "
                                  "never committed starts at its earliest offset", err)
                        return
                    await asyncio.sleep(1.0)
        finally:  # each holds an admin client with a thread of its own
            for group in groups:
                await group.close()
        self.start_at = {TopicPartition(topic, partition): offset for (topic, partition), offset in old.items()
                         if topic in self.topics and (topic, partition) not in mine}

    async def handle(self, batch: dict) -> None:
        """Route a batch, send what it routed, wait for Kafka's acknowledgement, commit (with
        the offsets carried over at the last assignment, if any)."""
        async with self.lock:
            outbox, sent, ends = Outbox(), [], dict(self.carried)
            for tp, messages in batch.items():
                metrics.EVENTS.labels(tp.topic).inc(len(messages))  # once a batch: a counter takes a lock at each inc
                for message in messages:
                    await self.route(message, outbox, sent)
                ends[tp] = messages[-1].offset + 1
            try:
                await self.send(outbox, sent)
                await delivered(sent)
            except BaseException as err:  # nothing committed: the batch is read again after the restart
                task = asyncio.current_task()
                if not (isinstance(err, asyncio.CancelledError) and task is not None and task.cancelling()):
                    log.error("ingest: a batch's stage records did not reach Kafka (%r): the worker stops", err)
                    await self.crash(err)
                raise
            try:
                await self.consumer.commit(ends)
            except (CommitFailedError, IllegalStateError) as err:  # revoked meanwhile: read again, dropped as copies
                log.warning("ingest: cannot commit %s (%r): its next owner reads it again", ends, err)
            self.carried.clear()

    async def on_partitions_revoked(self, revoked: set) -> None:
        """The batch in hand is committed before its partitions move on, and so are offsets
        carried over that no batch committed yet (their next owner, with no start of its own
        for them, would start at the earliest offset)."""
        async with self.lock:
            if self.carried:
                try:
                    await self.consumer.commit(self.carried)
                except (CommitFailedError, IllegalStateError) as err:
                    log.warning("ingest: cannot commit the offsets carried over %s (%r)", self.carried, err)
                self.carried.clear()

    async def on_partitions_assigned(self, assigned: set) -> None:
        """Partitions carried over start at the Faust group's offset: sought to here, before any
        await (``getmany`` must not read from the earliest offset meanwhile; aiokafka resets a
        partition only while it has no position). Only at the first assignment: by the next one
        they were committed."""
        for tp in assigned:
            offset = self.start_at.get(tp)
            if offset is not None:
                self.consumer.seek(tp, offset)
                self.carried[tp] = offset
                log.info("ingest: %s/%s starts at offset %s, where the worker's Faust group left it",
                         tp.topic, tp.partition, offset)
        self.start_at = {}

    async def measure_lag(self) -> None:
        """Messages behind the end of each input partition this worker reads (stormwatch_consumer_lag)."""
        if self.consumer is not None:
            await self.lag.measure(self.consumer)
