"""Detector state on Kafka: a Faust table whose changelog gets one write per key per batch.

A detector touches about ten state keys per post, and an ordered stage writes each event into
its buffer and deletes it moments later. Written straight to a Faust table, each of those is a
changelog message, and sending them is most of what a worker does (measured with py-spy).
:class:`TableState` keeps the batch's writes in a dict and :meth:`TableState.flush` writes each
changed key to the table once, for the partition it was written for; a key written and deleted
in the same batch costs nothing. The stage agent flushes at the end of every batch, before
Faust acks the batch's events, so the changelog holds every change the committed offsets
account for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

_GONE = object()


class TableState(MutableMapping[str, Any]):
    """A write-back view of one Faust table (its local store plus pending changes)."""

    def __init__(self, table: Any) -> None:  # a faust Table; typed loosely to keep faust out of the signature
        self.table = table
        self.partition = 0  # the partition the stage is processing: pending writes belong to it
        self.pending: dict[str, tuple[Any, int]] = {}  # key -> (value or _GONE, partition)

    def __getitem__(self, key: str) -> Any:
        hit = self.pending.get(key)
        if hit is None:
            return self.table[key]
        if hit[0] is _GONE:
            raise KeyError(key)
        return hit[0]

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = (value, self.partition)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending[key] = (_GONE, self.partition)

    def __contains__(self, key: object) -> bool:
        hit = self.pending.get(key)  # type: ignore[call-overload]
        if hit is None:
            return key in self.table
        return hit[0] is not _GONE

    def __iter__(self) -> Iterator[str]:
        for key in list(self.table):
            if key not in self.pending:
                yield key
        for key, (value, _partition) in list(self.pending.items()):
            if value is not _GONE:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self, enter: Callable[[int], None]) -> int:
        """Write the pending changes to the table, one partition at a time: ``enter(p)`` makes
        partition ``p`` the one Faust writes for (its changelog partition and store). Returns
        how many changes went to the changelog."""
        by_partition: dict[int, list[tuple[str, Any]]] = {}
        for key, (value, partition) in self.pending.items():
            by_partition.setdefault(partition, []).append((key, value))
        self.pending.clear()
        sent = 0
        for partition, changes in sorted(by_partition.items()):
            enter(partition)
            for key, value in changes:
                if value is not _GONE:
                    self.table[key] = value
                elif key in self.table:
                    del self.table[key]
                else:
                    continue  # created and deleted within the batch: nothing to tell the changelog
                sent += 1
        return sent
