"""Detector state on Kafka: a Faust table whose changelog gets one write per key per batch.

A detector touches about ten state keys per post, and an ordered stage writes each event into
its buffer and deletes it moments later. Written straight to a Faust table, each of those is a
changelog message, and sending them is most of what a worker does (measured with py-spy).
:class:`TableState` keeps the batch's writes in a dict and :meth:`TableState.flush` writes each
changed key to the table's store once, for the partition it was written for; a key written and
deleted in the same batch costs nothing. The stage agent flushes at the end of every batch,
before Faust acks the batch's events, so the changelog holds every change the committed offsets
account for.

The changelog messages are the ones Faust writes (the key and value in the table's codecs, a
tombstone for a delete), so Faust restores the table from them as before; but
:meth:`TableState.send_changelog` packs a partition's messages into aiokafka record batches
instead of handing each to Faust's producer buffer, which costs a future, a task and several
callbacks per message: a fifth of a worker's CPU before (issue 15, measured with py-spy).

Faust queues changelog writes in its producer buffer, and ``producer.flush()`` returns once
0.1 s pass with nothing sent, with thousands of writes still queued on a busy worker (its
"producer buffer full" warnings); at shutdown the buffer drops what it still holds. So a
batch could be acked and committed while its state changes were still in memory: lost for
good by a kill or a stop (issue 13). :func:`track_changelog` keeps the future of every
changelog message, and :func:`delivered` waits for Kafka to acknowledge them before a stage
lets Faust ack its batch.

Iteration (the engine indexes a partition's timers, expiry and buffered events from it after a
restart or a rebalance) reads the store of the partition being processed directly. Faust's own
iteration walks every active partition's store while a lookup reads only the current event's,
so iterating a table and looking each key up raised ``KeyError`` for the keys of the worker's
other partitions (issue 13: every event of that partition then failed as ``detector_error``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import orjson
from faust.serializers import codecs
from faust.utils import json as faust_json

_GONE = object()


def table_json(value: Any) -> bytes:
    """``value`` in the bytes Faust's ``json`` codec writes, without the codec's chain of calls:
    Faust encodes with orjson (``OPT_NON_STR_KEYS | OPT_UTC_Z``, its ``on_default`` for other
    types), and for string keys (every record's) that option changes nothing but the speed.
    The chain cost more than orjson itself (13 against 3.5 µs per event in process; figures in
    docs/BENCHMARKS.md, session 19). A key that is not a string takes Faust's options, so the
    bytes are always Faust's."""
    try:
        return orjson.dumps(value, default=faust_json.on_default, option=orjson.OPT_UTC_Z)
    except TypeError:  # orjson.JSONEncodeError: a key that is not a string (or what Faust fails on too)
        return orjson.dumps(value, default=faust_json.on_default,
                            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)


def _encoder(serializer: Any) -> Callable[[Any], bytes]:
    """How a table's key or value is encoded for its changelog: :func:`table_json` where Faust's
    ``json`` codec is orjson (the same bytes), Faust's codec otherwise."""
    if serializer == "json" and getattr(faust_json, "orjson", None) is orjson:
        return table_json
    return lambda value: codecs.dumps(serializer, value)


def _raw(value: bytes) -> bytes:
    """A raw table value as it is; refused unless bytes (Faust's ``raw`` codec passes any value
    on, to fail later inside the producer)."""
    if not isinstance(value, bytes):
        raise TypeError(f"a raw table value must be bytes, not {type(value).__name__}")
    return value


def track_changelog(table: Any, sent: list) -> None:
    """Append the future of every changelog message ``table`` sends to ``sent``. Faust's table
    calls ``self.send_changelog`` for each write, so the instance attribute takes it."""
    send = table.send_changelog

    def send_changelog(*args: Any, **kwargs: Any) -> Any:
        future = send(*args, **kwargs)
        sent.append(future)
        return future

    table.send_changelog = send_changelog


def kafka_producer(app: Any) -> Any:
    """The aiokafka producer under Faust's (for :meth:`TableState.send_changelog`)."""
    return app.producer._ensure_producer()


async def delivered(sent: list, timeout: float = 120.0) -> None:
    """Wait until Kafka acknowledged every changelog message in ``sent`` (emptied): raises the
    first send error, or ``TimeoutError`` after ``timeout`` seconds (a message Faust failed to
    hand to aiokafka is never resolved). On a graceful stop Faust stops the agents before the
    producer, so a stage's last batch is still sent."""
    futures = list(sent)
    sent.clear()
    if not futures:
        return
    done, pending = await asyncio.wait(futures, timeout=timeout)
    if pending:
        raise TimeoutError(f"{len(pending)} changelog messages not acknowledged after {timeout:.0f} s")
    for future in done:
        if future.cancelled():
            raise asyncio.CancelledError("a changelog message was cancelled")
        if future.exception() is not None:
            raise future.exception()


class TableState(MutableMapping[str, Any]):
    """A write-back view of one Faust table (its local store plus pending changes)."""

    def __init__(self, table: Any, sent: list | None = None, raw_values: bool = False) -> None:  # a faust Table
        """``raw_values``: the values are bytes, written to the changelog as they are (a table
        with a ``raw`` value schema still reports the ``json`` serializer, which would quote them)."""
        self.table = table
        self.partition = 0  # the partition the stage is processing: pending writes belong to it
        self.pending: dict[str, tuple[Any, int]] = {}  # key -> (value or _GONE, partition)
        # key -> partition it was last written for; only for the memory store (see _stored)
        self.written: dict[str, int] = {}
        self._track = not hasattr(getattr(table, "data", None), "_db_for_partition")
        # futures of changelog messages not yet known delivered (see delivered); may be shared
        self.sent: list = [] if sent is None else sent
        if hasattr(table, "send_changelog"):
            track_changelog(table, self.sent)
        # partition -> changelog messages (key, value or None) flushed but not sent yet
        self.outgoing: dict[int, list[tuple[bytes, bytes | None]]] = {}
        # key -> (value, its changelog key, value) from encode(), for the flush that follows it
        self.encoded: dict[str, tuple[Any, bytes, bytes | None]] = {}
        self._dump_key = _encoder(getattr(table, "key_serializer", None))
        self._dump_value = _raw if raw_values else _encoder(getattr(table, "value_serializer", None))

    def __getitem__(self, key: str) -> Any:
        hit = self.pending.get(key)
        if hit is None:
            return self.table.data[key]
        if hit[0] is _GONE:
            raise KeyError(key)
        return hit[0]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """As ``Mapping.get``, without a ``KeyError`` raised and caught for each key not there:
        most keys a detector asks for are new (an object, a pair), and this is its hottest path."""
        hit = self.pending.get(key)
        if hit is not None:
            return default if hit[0] is _GONE else hit[0]
        store = self.table.data
        plain = getattr(store, "data", None)  # the memory store keeps a dict
        if type(plain) is dict:
            return plain.get(key, default)
        try:
            return store[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = (value, self.partition)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending[key] = (_GONE, self.partition)

    def __contains__(self, key: object) -> bool:
        hit = self.pending.get(key)  # type: ignore[call-overload]
        if hit is None:
            return key in self.table.data
        return hit[0] is not _GONE

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        """(key, value) of the current partition only: its stored keys (pending changes win),
        then its keys not stored yet. Never looks a key up, so never raises ``KeyError``."""
        pending = self.pending
        for key, value in list(self._stored()):
            if key not in pending:
                yield key, value
        for key, (value, partition) in list(pending.items()):
            if value is not _GONE and partition == self.partition:
                yield key, value

    def __iter__(self) -> Iterator[str]:
        return (key for key, _value in self.items())

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _stored(self) -> Iterator[tuple[str, Any]]:
        """The table's stored items for ``self.partition``.

        RocksDB keeps one database per partition: read that one. The memory store keeps one
        dict; it knows the partition of keys recovered from the changelog, and this object
        knows the partition of those it wrote (a key of unknown partition is included)."""
        store = getattr(self.table, "data", None)
        if hasattr(store, "_db_for_partition") and hasattr(store, "_visible_items"):  # RocksDB
            db = store._db_for_partition(self.partition)
            for raw_key, raw_value in store._visible_items(db):
                yield store._decode_key(raw_key), store._decode_value(raw_value)
            return
        data = getattr(store, "data", None)
        if isinstance(data, dict):  # memory://
            recovered = getattr(store, "_key_partition", {})
            for key, value in list(data.items()):
                partition = self.written.get(key, recovered.get(key, self.partition))
                if partition == self.partition:
                    yield key, value
            return
        for key in list(store):  # another store: tolerate keys this partition cannot read
            try:
                yield key, store[key]
            except KeyError:
                continue

    def encode(self) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """The pending changes as changelog messages (key, value, None for a delete) in the
        table's codecs, per partition in the order they were made; :meth:`flush` sends these same
        bytes, so a batch's change is encoded once for its redo records and its changelog. One
        pass for all partitions: asked once per partition, a pass over every change each time was
        3% of a worker owning four (session 25, py-spy). Only valid until that flush (or
        :meth:`drop`): the detectors change records in place."""
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, (value, partition) in self.pending.items():
            message = self._message(key, value)
            self.encoded[key] = (value, *message)
            by_partition.setdefault(partition, []).append(message)
        return by_partition

    def _message(self, key: str, value: Any) -> tuple[bytes, bytes | None]:
        """A change as its changelog message, in the table's codecs (the bytes Faust writes)."""
        return self._dump_key(key), None if value is _GONE else self._dump_value(value)

    def drop(self) -> None:
        """Forget the batch's pending changes (its outputs did not all go out)."""
        self.pending.clear()
        self.encoded.clear()

    def redo(self, change: list, partition: int) -> None:
        """One change of a redo record (:func:`redo_changes`) again, pending for ``partition``."""
        self.pending[change[0]] = (change[1] if len(change) > 1 else _GONE, partition)

    def flush(self, enter: Callable[[int], None]) -> int:
        """Write the pending changes to the table's store, one partition at a time, and queue
        their changelog messages for :meth:`send_changelog`: ``enter(p)`` makes partition ``p``
        the one Faust's store writes for. Returns how many changes will go to the changelog."""
        by_partition: dict[int, list[tuple[str, Any]]] = {}
        for key, (value, partition) in self.pending.items():
            by_partition.setdefault(partition, []).append((key, value))
        self.pending.clear()
        encoded, self.encoded = self.encoded, {}
        store = self.table.data
        sent = 0
        for partition, changes in sorted(by_partition.items()):
            enter(partition)
            outgoing = self.outgoing.setdefault(partition, [])
            for key, value in changes:
                if value is not _GONE:
                    store[key] = value
                    if self._track:
                        self.written[key] = partition
                elif key in store:
                    del store[key]
                    self.written.pop(key, None)
                else:
                    continue  # created and deleted within the batch: nothing to tell the changelog
                done = encoded.get(key)
                outgoing.append(done[1:] if done is not None and done[0] is value else self._message(key, value))
                sent += 1
        return sent

    async def send_changelog(self, producer: Any) -> int:
        """Send the flushed changes to the table's changelog, as record batches through the
        aiokafka ``producer``, each partition's to its changelog partition in order; the future
        of each batch goes to ``self.sent`` (see :func:`delivered`). Returns the batches sent.

        Faust's own writes also store the changelog offset in a RocksDB partition's database
        (where its recovery starts next time); each batch's callback does the same."""
        topic = self.table.changelog_topic.get_topic_name()
        batches = 0
        for partition, messages in list(self.outgoing.items()):
            batch = producer.create_batch()
            for key, value in messages:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
                    await self._send(producer, batch, topic, partition)
                    batches += 1
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any message
            if batch.record_count():
                await self._send(producer, batch, topic, partition)
                batches += 1
            del self.outgoing[partition]  # kept until then: a send that fails leaves it for the next try
        return batches

    async def _send(self, producer: Any, batch: Any, topic: str, partition: int) -> None:
        count = batch.record_count()
        batch.close()  # nothing else joins it (aiokafka would append other sends to an open batch)
        future = await producer.send_batch(batch, topic, partition=partition)
        store = self.table.data

        def persisted(done: asyncio.Future) -> None:
            if not done.cancelled() and done.exception() is None:
                result = done.result()
                store.set_persisted_offset(result.topic_partition, result.offset + count - 1)

        future.add_done_callback(persisted)
        self.sent.append(future)


async def write_back(states: Iterable[TableState], enter: Callable[[int], None], producer: Any) -> int:
    """A batch's changes: every store takes them all before anything is awaited (a stop within
    a send must not leave some tables without the batch), then each table's changelog. Returns
    how many changelog messages that is."""
    states = list(states)
    written = sum(state.flush(enter) for state in states)
    for state in states:
        await state.send_changelog(producer)
    return written


def redo_parts(states: dict[str, TableState], changes: dict[str, list[tuple[bytes, bytes | None]]], seq: str,
               limit: int) -> list[bytes]:
    """A batch's changes on one partition as redo record parts (see ``streams.kafka.stage``):
    ``changes`` maps each table's name in ``states`` to that partition's changelog messages from
    :meth:`TableState.encode` (JSON themselves, so not encoded again); each part is
    ``{"seq": seq, "changes": [[table, key, value] or [table, key] for a delete, ...]}``, at most
    ``limit`` bytes unless one change is larger. No part when nothing changed there."""
    assert all(state.table.key_serializer == state.table.value_serializer == "json" for state in states.values()), \
        "redo parts are built from JSON changelog bytes"
    head = b'{"seq":' + orjson.dumps(seq) + b',"changes":['
    parts: list[list[bytes]] = [[]]
    empty = size = len(head) + 2  # the head and the closing "]}"
    for name, state in states.items():
        table = orjson.dumps(name)
        for key, value in changes.get(name, ()):
            change = b"[" + table + b"," + key + (b"]" if value is None else b"," + value + b"]")
            if parts[-1] and size + len(change) > limit:
                parts.append([])
                size = empty
            parts[-1].append(change)
            size += len(change) + 1  # and its comma
    if not parts[0]:
        return []
    return [head + b",".join(part) + b"]}" for part in parts]


def redo_changes(read: Callable[[str], Any], partition: int) -> list[tuple[str, list]] | None:
    """The ``(table, change)`` pairs of ``partition``'s redo record, for :meth:`TableState.redo`,
    read with ``read(key)`` from the redo table: values are written as JSON bytes, and read
    back as bytes (the memory store) or already decoded (a RocksDB store decodes them with the
    table's default JSON codec; so did every store before they were written as bytes); ``[]``
    when there is none. None when a part is missing or belongs to a later record: that batch
    never reached the tables, and this one's writes were acknowledged before it began."""
    def load(key: str) -> Any:
        value = read(key)
        return orjson.loads(value) if isinstance(value, (bytes, str)) else value

    head = load(str(partition))
    if not head:
        return []
    parts = [load(f"{partition}\t{i}") for i in range(head["parts"])]
    if any(part is None or part["seq"] != head["seq"] for part in parts):
        return None
    return [(name, change) for part in parts for name, *change in part["changes"]]
