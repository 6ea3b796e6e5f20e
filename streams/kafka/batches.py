"""Stage records: many events in one Kafka message between the worker's agents (issue 15).

Handing each event to a stage as a message of its own made a worker spend most of its time in
Faust and aiokafka, per message, rather than in the detectors. So ``ingest`` and the stages'
``forward`` gather what a batch sends to one partition of a stage topic, from one source, into
one record: a sequence of ``(key, event)`` entries in the order they were added. The source
stays in the record's header, so a stage partition's watermark sees exactly what it saw with one
message per event; a record is handled whole, within one of the stage's batches.

The framing is binary (a 4-byte length before each key and each event), not JSON: an input
event is copied as it came, never parsed or serialised again on the way. An event bound for
several keys on one partition (a co-action with its partners, each a pair) is written once:
the entries after the first carry :data:`REPEAT` as their length and no event, and the reader
hands back the same bytes object, so it decodes the event once. Input topics keep one event
per message: that is the contract.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

BATCH_HEADER = "stormwatch-batch"  # present on a stage record with several entries
RECORD_BYTES = 256_000  # a record is cut after this many bytes (Kafka's default limit is about 1 MB)
_LENGTHS = struct.Struct(">II")
REPEAT = 0xFFFF_FFFF  # an entry's event length meaning "the event of the entry before"


def pack(entries: list[tuple[bytes, bytes]]) -> bytes:
    """``(key, event)`` entries as one record value (an empty key: none, as for ticks)."""
    return b"".join(records(entries, limit=math.inf))


def records(entries: list[tuple[bytes, bytes]], limit: float | None = None) -> list[bytes]:
    """``(key, event)`` entries as record values in order, each cut after ``limit`` bytes
    (:data:`RECORD_BYTES`; one entry alone may be larger). An event equal to the one before it
    in the same record is not written again (:data:`REPEAT`)."""
    limit = RECORD_BYTES if limit is None else limit  # read at each call, not bound as a default: tests lower it
    out: list[bytes] = []
    parts: list[bytes] = []
    size, previous = 0, None
    for key, value in entries:
        if value == previous:
            part = _LENGTHS.pack(len(key), REPEAT) + key
        else:
            part = _LENGTHS.pack(len(key), len(value)) + key + value
        if parts and size + len(part) > limit:  # cut: the next record's first entry carries its event
            out.append(b"".join(parts))
            parts, size = [], 0
            part = _LENGTHS.pack(len(key), len(value)) + key + value
        parts.append(part)
        size += len(part)
        previous = value
    if parts:
        out.append(b"".join(parts))
    return out


def unpack(record: bytes) -> list[tuple[str | None, bytes]]:
    """The entries of :func:`pack`, keys decoded, a repeated event as the same bytes object;
    ``ValueError`` when the framing is broken."""
    entries: list[tuple[str | None, bytes]] = []
    view, at, end = memoryview(record), 0, len(record)
    previous: bytes | None = None
    while at < end:
        if at + _LENGTHS.size > end:
            raise ValueError(f"stage record: truncated entry header at byte {at}")
        klen, vlen = _LENGTHS.unpack_from(view, at)
        at += _LENGTHS.size
        repeat = vlen == REPEAT
        if repeat:
            vlen = 0
            if previous is None:
                raise ValueError(f"stage record: entry at byte {at} repeats the event before it, but none came before")
        if at + klen + vlen > end:
            raise ValueError(f"stage record: entry at byte {at} runs past the end ({klen} + {vlen} bytes)")
        key = bytes(view[at:at + klen]).decode() if klen else None
        if not repeat:
            previous = bytes(view[at + klen:at + klen + vlen])
        entries.append((key, previous))
        at += klen + vlen
    return entries


class Outbox:
    """Entries bound for stage topic partitions, sent as one record per (stage, partition,
    source), cut at :data:`RECORD_BYTES`. Order is kept within each of those."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int, str], list[tuple[bytes, bytes]]] = {}

    def add(self, stage: str, partition: int, source: str, key: bytes | None, value: bytes) -> None:
        self.entries.setdefault((stage, partition, source), []).append((key or b"", value))

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.entries.values())

    async def send(self, topics: Mapping[str, object], source_header: str, sent: list | None = None) -> int:
        """Send what was added (to ``topics[stage]``, Faust topics) and empty the outbox;
        returns the number of records sent. The future of each goes to ``sent``, for the caller
        to wait for Kafka's acknowledgement (``streams.kafka.state.delivered``)."""
        count = 0
        entries, self.entries = self.entries, {}
        for (stage, partition, source), items in entries.items():
            headers = {source_header: source.encode(), BATCH_HEADER: b"1"}
            for value in records(items):
                future = await topics[stage].send(value=value, partition=partition,  # type: ignore[attr-defined]
                                                  headers=headers)
                if sent is not None:
                    sent.append(future)
                count += 1
        return count

