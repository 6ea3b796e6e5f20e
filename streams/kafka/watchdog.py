"""The worker's watchdog: no input message is lost between fetch and agent.

faust-streaming 0.15.3 can fetch a message and never hand it to an agent (docs/KNOWN-PROBLEMS.md).
:class:`Progress` keeps the contiguous handled offset of every partition; an agent asks
:class:`Admit` before handling a message. A hole before it is read back with a consumer of the
worker's own (:class:`HoleReader`) and handled first, in offset order; what cannot be read back
is re-read by a seek; a partition with fetched messages and no progress for 20 s is resumed and
re-read; and Faust's commits never pass the handled offset. Re-reads are harmless: the engine
drops duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP

from streams import metrics
from streams.settings import Settings, bootstrap_servers

log = logging.getLogger("stormwatch.worker")


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
    contiguous. :meth:`admit` checks each message against the contiguous mark: past it, a gap.
    :meth:`hole` and :meth:`read_back` have it read back first (see :class:`HoleReader`); what
    is still missing after that is re-read by a seek from the first missing offset (again
    every ``GAP_RETRY_S`` while it lasts; after ``MAX_REREADS`` the mark moves on), and the
    message is handled all the same: holding messages back until a re-read arrived stalled
    whole partitions when it did not. For the re-read to arrive, Faust's read-offset rule is
    turned off (see :func:`_guard_consumer`). At or below the mark, a message this worker
    already handled, skipped. :meth:`commit_cap` keeps Faust's commits at the mark, so a
    worker killed meanwhile restarts before the hole. :meth:`stuck` is the older watchdog for a
    partition with no progress at all (a partition Faust left paused is never fetched): its
    position or end offset past the mark, no progress for ``STALL_S``: re-read from the mark.
    """

    STALL_S = 20.0
    STALL_MAX_S = 160.0
    GAP_RETRY_S = 5.0
    MAX_REREADS = 24  # two minutes: taking a hole as real loses whatever was there

    def __init__(self) -> None:
        self.done: dict = {}  # TP -> every offset up to this one was handled (or committed at assignment)
        self.behind: dict = {}  # TP -> (contiguous mark, since when, seconds to wait before a re-read)
        self.gaps: dict = {}  # TP -> (first missing offset, when last re-read, re-reads so far)
        self.ahead: dict = {}  # TP -> the highest offset handled past a gap
        self.high: dict = {}  # TP -> the highest offset handled here since the assignment
        self.filled: dict = {}  # TP -> the first missing offset the hole reader was asked for last
        # topic -> (partition -> the oldest offset whose events a stage still buffers, or None)
        self.holds: dict[str, Callable[[int], int | None]] = {}

    def admit(self, tp, offset: int, now: float) -> tuple[bool, int | None]:  # noqa: ANN001 - a Faust TP
        """Whether to handle the message at ``offset``, and the offset to re-read ``tp`` from
        (None: no re-read now). A message past a gap is handled too: a re-read that never
        arrives (seen) must not hold the partition back; the re-read's duplicates are dropped
        by the engine's seen-set."""
        done = self.done.get(tp)
        high = self.high.get(tp, -1)
        if offset > high:
            self.high[tp] = offset
        if done is None or offset == done + 1:
            self.done[tp] = offset
            if self.ahead.get(tp, -1) <= offset:
                self.ahead.pop(tp, None)
                self.gaps.pop(tp, None)
            return True, None
        if offset <= done:
            # Handled here already (a re-read, or a fetch from before one): skipped. Below the
            # group's committed offset read at assignment but never handled here: handled (a
            # duplicate at worst), since that read and Faust's own can disagree (seen).
            return offset > high, None
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

    def hole(self, tp, offset: int) -> int | None:  # noqa: ANN001 - a Faust TP
        """The first offset missing before ``offset`` when the hole reader should read it back:
        once per hole (a hole it could not read goes to :meth:`admit`'s seek), else None."""
        done = self.done.get(tp)
        if done is None or offset <= done + 1 or self.filled.get(tp) == done + 1:
            return None
        self.filled[tp] = done + 1
        return done + 1

    def read_back(self, tp, messages: list, now: float) -> list:  # noqa: ANN001 - a Faust TP
        """Admit the messages of a hole read back, in order; the ones to handle. What is still
        missing after them is not read back again (see :meth:`hole`)."""
        handled = [m for m in messages if self.admit(m.tp, m.offset, now)[0]]
        if tp in self.done:
            self.filled[tp] = self.done[tp] + 1
        return handled

    def mark(self, message) -> None:  # noqa: ANN001 - a Faust Message
        """Record a message handled with no gap check (tests, and code that cannot re-read)."""
        self.done[message.tp] = max(message.offset, self.done.get(message.tp, message.offset))

    def rewind(self, starts: dict) -> None:
        """Forget handling ``tp`` from ``starts[tp]`` on: a batch whose state never reached Kafka
        (see ``streams.kafka.state.delivered``) must not be committed, so a restart reads it."""
        for tp, offset in starts.items():
            if tp in self.done:
                self.done[tp] = min(self.done[tp], offset - 1)
            self.high[tp] = min(self.high.get(tp, offset - 1), offset - 1)
            self.gaps.pop(tp, None)
            self.ahead.pop(tp, None)
            self.filled.pop(tp, None)

    def commit_cap(self, tp) -> int | None:  # noqa: ANN001
        """The highest offset Faust may commit for ``tp`` (next to read): past the mark only
        what the agents handled contiguously, and not past a record whose events a stage still
        buffers (``holds``: a restart reads them again). None for partitions no agent reads."""
        done = self.done.get(tp)
        if done is None:
            return None
        hold = self.holds.get(tp[0])
        oldest = hold(tp[1]) if hold is not None else None
        return done + 1 if oldest is None else min(done + 1, oldest)

    def assigned(self, committed: dict) -> None:
        """A new assignment: the group's committed offsets (next to read) are where each
        partition starts. Read before the streams resume, because Faust can commit messages it
        never handed over (seen here), so a later committed offset is not proof of handling."""
        self.done = {tp: offset - 1 for tp, offset in committed.items()}
        self.high = {}
        self.filled = {}
        self.behind = {}
        self.gaps = {}
        self.ahead = {}

    def stuck(self, positions: dict, now: float) -> dict:
        """Stuck partitions and the offset to re-read them from; ``positions``: per partition the
        consumer's position or the partition's end offset, whichever is further. A partition is
        re-read after ``STALL_S`` with no progress, then after twice as long each time no progress
        followed (up to ``STALL_MAX_S``): a worker whose agents are merely busy (one slow stage
        holds Faust's fetch loop for all) is also "stuck" by this rule, and re-reading it every
        20 s only adds work (seen on a loaded CI runner: 72 re-reads in one test)."""
        found = {}
        for tp, position in positions.items():
            done = self.done.get(tp)
            if done is None or position <= done + 1:
                self.behind.pop(tp, None)
                continue
            last, since, wait = self.behind.setdefault(tp, (done, now, self.STALL_S))
            if last != done:
                self.behind[tp] = (done, now, self.STALL_S)  # progress: behind only because of a backlog
            elif now - since >= wait:
                found[tp] = done + 1
                self.behind[tp] = (done, now, min(2 * wait, self.STALL_MAX_S))
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
    """Once per consumer, before its first assignment (before Faust starts its fetch loop, which
    binds ``_read_offset.__getitem__`` when it starts): read offsets as unknown (see
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


@dataclass(frozen=True, slots=True)
class ReadBack:
    """A message the hole reader read back: what the agents use of a Faust ``Message``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class HoleReader:
    """Reads the messages of a hole with a consumer of its own (no group, assigned by hand), so
    the agent handles them before the message past the hole, in offset order: a stage's
    watermark then never passes an event that has not arrived, and its alerts are replay's.
    Faust's own re-read (a seek) arrives after later messages, when it arrives at all (seen: a
    start-up rebalance whose seek back was still not fetched 8 s later while later offsets were
    handled, and alerts built from fewer early reposts than replay's). At most ``MAX_MESSAGES``
    and ``MAX_BYTES`` per hole, within ``TIMEOUT_S``: the rest of a bigger hole goes to the
    seek. One read at a time."""

    MAX_MESSAGES = 5_000
    MAX_BYTES = 64 * 1024 * 1024
    TIMEOUT_S = 10.0  # per hole, waiting for another agent's read and starting the consumer included

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self.bootstrap, self.client_id = bootstrap, client_id
        self.consumer = None
        self.closed = False
        self.lock = asyncio.Lock()

    async def read(self, tp, first: int, end: int) -> list[ReadBack]:  # noqa: ANN001 - a Faust TP
        """Messages ``first`` up to ``end`` (not included) of ``tp``, from ``first`` on without a
        hole (fewer, or none, when the read stopped at a bound or failed)."""
        read: list[ReadBack] = []
        try:
            await asyncio.wait_for(self._locked(tp, first, end, read), self.TIMEOUT_S)
        except asyncio.TimeoutError:  # what arrived in time is kept; the seek re-reads the rest
            log.warning("reading %s/%s back from %s: %s messages in %.0f s", tp.topic, tp.partition, first,
                        len(read), self.TIMEOUT_S)
        except Exception:  # the broker is busy or gone: the seek re-read is left
            log.warning("cannot read %s/%s from %s back", tp.topic, tp.partition, first, exc_info=True)
            await self._stop()
        return read

    async def _locked(self, tp, first: int, end: int, read: list) -> None:  # noqa: ANN001
        async with self.lock:
            if not self.closed:
                await self._read(tp, first, end, read)

    async def _read(self, tp, first: int, end: int, read: list) -> None:  # noqa: ANN001
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                             group_id=None, enable_auto_commit=False, auto_offset_reset="none")
            await self.consumer.start()  # (stopped by _stop even when this start is cut short)
        part = TopicPartition(tp.topic, tp.partition)
        self.consumer.assign([part])
        self.consumer.seek(part, first)
        size, want = 0, min(end, first + self.MAX_MESSAGES)
        while first + len(read) < want and size < self.MAX_BYTES:
            for record in (await self.consumer.getmany(part, timeout_ms=500)).get(part, []):
                if record.offset != first + len(read) or record.offset >= want:
                    return
                read.append(ReadBack(record.topic, record.partition, record.offset, record.key, record.value,
                                     list(record.headers or ())))
                size += len(record.value or b"") + len(record.key or b"")

    async def close(self) -> None:
        """At shutdown: no read starts a consumer after this."""
        self.closed = True
        await self._stop()

    async def _stop(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:  # closing a broken consumer: nothing left to save
                log.debug("hole reader did not stop cleanly", exc_info=True)


class GroupOffsets:
    """A consumer group's committed offsets (the worker's own by default), read with
    kafka-python's admin client."""

    def __init__(self, settings: Settings, group: str | None = None) -> None:
        self.bootstrap = bootstrap_servers(settings.broker)
        self.group = group or settings.app_id
        self.admin = None

    async def read(self) -> dict:
        """``{(topic, partition): offset}``; raises when the broker does not answer."""
        return await asyncio.get_running_loop().run_in_executor(None, self._fetch)

    async def fetch(self) -> dict:
        """:meth:`read`, or nothing when the broker does not answer."""
        try:
            return await self.read()
        except Exception:  # the broker is busy or gone: the watchdog waits for the next round
            log.debug("cannot read the group's committed offsets", exc_info=True)
            return {}

    async def close(self) -> None:
        """Close the admin client (its connections and its I/O thread), if one was opened."""
        admin, self.admin = self.admin, None
        if admin is not None:
            await asyncio.get_running_loop().run_in_executor(None, admin.close)

    def _fetch(self) -> dict:
        if self.admin is None:
            from kafka import KafkaAdminClient

            self.admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.group}-watchdog")
        offsets = self.admin.list_group_offsets(self.group)[self.group]
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


class Admit:
    """What every agent asks before it handles a message: ``await admit(message)`` gives the
    messages to handle now, in offset order (see :meth:`__call__`). ``seek(tp, offset)``
    re-reads a partition through Faust's consumer, for what ``holes`` cannot read back."""

    def __init__(self, progress: Progress, holes: HoleReader,
                 seek: Callable[[object, int], Awaitable[None]]) -> None:
        self.progress, self.holes, self.seek = progress, holes, seek
        self.rewind = progress.rewind
        self.hold = progress.holds.__setitem__

    async def __call__(self, message) -> list:  # noqa: ANN001 - a Faust Message
        """Nothing when ``message`` was handled already; the hole before it, read back, then
        ``message``; past a hole that could not be read back, ``message`` all the same, and the
        partition is re-read from the hole by a seek (see :class:`Progress`)."""
        progress = self.progress
        first = progress.hole(message.tp, message.offset)
        handled: list = []
        if first is not None:
            read = await self.holes.read(message.tp, first, message.offset)
            handled = progress.read_back(message.tp, read, time.monotonic())
            metrics.HOLE_MESSAGES.inc(len(handled))
            log.warning("%s/%s: got offset %s, expected %s: read %s messages back", message.topic,
                        message.partition, message.offset, first, len(read))
        handle, reread = progress.admit(message.tp, message.offset, time.monotonic())
        if reread is not None:
            metrics.GAPS_REREAD.inc()
            log.warning("%s/%s: got offset %s, expected %s: re-reading from %s", message.topic, message.partition,
                        message.offset, reread, reread)
            try:
                await self.seek(message.tp, reread)
            except Exception:  # revoked meanwhile: its next owner starts from the capped commit
                log.warning("cannot re-read %s/%s", message.topic, message.partition, exc_info=True)
        return handled + [message] if handle else handled

    async def each(self, message, handled: list, handle: Callable[[Any], Awaitable[None]]) -> None:  # noqa: ANN001
        """``handle`` each message :meth:`__call__` gives for ``message``, in order, noting it in
        ``handled`` (what a failed batch rewinds to). Stopped within one (cancelled, or it
        raised), the commit goes back to it: the ones after it were admitted, not handled."""
        for admitted in await self(message):
            handled.append(admitted)
            try:
                await handle(admitted)
            except BaseException:
                self.rewind({admitted.tp: admitted.offset})
                raise


def watch(app: faust.App, settings: Settings, consumed: set[str]) -> Admit:
    """Install the watchdog on ``app`` and return the :class:`Admit` every agent asks before it
    handles a message: a hole before the message is read back first (:class:`HoleReader`), what
    that cannot read is re-read by a seek, stalls every 5 s by the lag timer, and Faust's commits
    are capped at the contiguous handled offset (see :class:`Progress`). ``consumed``: the
    topics whose partitions are followed (filled by the caller as it declares them)."""
    progress = Progress()
    holes = HoleReader(bootstrap_servers(settings.broker), f"{settings.app_id}-holes")

    async def seek(tp, offset: int) -> None:  # noqa: ANN001 - a Faust TP
        app.consumer.resume_partitions({tp})  # resumed as the watchdog does: a seek alone was not always fetched
        await app.consumer.seek(tp, offset)

    admit = Admit(progress, holes, seek)

    @app.on_before_shutdown.connect
    async def close_hole_reader(*_args, **_kwargs) -> None:
        await holes.close()

    group_offsets = GroupOffsets(settings)
    lag = metrics.ConsumerLag()

    @app.timer(5.0)
    async def measure_lag() -> None:
        """Consumer lag per assigned partition (the stormwatch_consumer_lag gauge), and the
        watchdog for partitions whose fetched messages never reach an agent (see :class:`Progress`)."""
        consumer = app.consumer
        positions = {tp: position for tp, position in (await lag.measure(consumer)).items() if tp.topic in consumed}
        if app.in_recovery or app.rebalancing:
            return  # Faust pauses and seeks partitions itself meanwhile
        try:  # the broker's end offsets: a partition Faust left paused is never fetched at all
            ends = await consumer.highwaters(*positions)
        except Exception:  # the broker is busy: positions alone this round
            ends = {}
        positions = {tp: max(position, ends.get(tp) or 0) for tp, position in positions.items()}
        for tp, offset in progress.stuck(positions, time.monotonic()).items():
            log.warning("%s/%s: messages before offset %s but no agent handled offset %s for %.0f s or more: "
                        "resuming it and re-reading from there", tp.topic, tp.partition, positions[tp], offset,
                        Progress.STALL_S)
            metrics.WATCHDOG_REREADS.inc()
            consumer.resume_partitions({tp})
            await consumer.seek(tp, offset)

    @app.on_partitions_revoked.connect
    async def guard_before_fetching(_app, _revoked, **_kwargs) -> None:  # noqa: ANN001 - Faust's signal signature
        """Guard the consumer before its fetch loop starts. Faust sends this signal before every
        assignment, the first one too, while the table recovery it starts with the assignment
        (which starts the fetch loop) runs beside ``remember_start``. The fetch loop binds the
        read offsets once, when it starts: guarded later, re-reads are dropped for as long as
        it runs (seen in CI: every re-read of a restarted worker dropped, its evidence log
        stuck)."""
        _guard_consumer(app.consumer, progress)

    @app.on_partitions_assigned.connect
    async def remember_start(_app, assigned, **_kwargs) -> None:  # noqa: ANN001 - Faust's signal signature
        """Where each partition starts, for the watchdog (see :meth:`Progress.assigned`): the
        group's committed offset, or for a partition the group never committed (a new group, a
        new topic) its earliest offset, where ``auto_offset_reset=earliest`` starts reading."""
        _guard_consumer(app.consumer, progress)  # before the first await: see guard_before_fetching
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

    return admit
