"""A detector's state as typed records: ``ctx.records.get("pair", platform, a, b)``.

Detectors name a record by its kind and ids; the key is built here and nowhere else
(:func:`record_key`, ids escaped by :mod:`events.keys`), and the API's read model, the engine
and tests read keys back with :func:`parse`. Every record carries ``until`` (event time): saving
it writes it back to the state (a dict in process, a changelogged Faust table on Kafka) and
schedules its expiry, so a detector cannot change a record and forget to write it or forget to
make it expire. :meth:`Records.edit` does both around a ``with`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from events.keys import SEP, key, parts

Expire = Callable[[str, float], None]


record_key = key  # the state key of one record: its kind, then its ids, escaped (events.keys.key)


def parse(state_key: str) -> tuple[str, list[str]]:
    """(kind, ids) of a key :func:`record_key` built."""
    kind, *ids = parts(state_key)
    return kind, ids


class Records:
    """The records of one detector; the engine hands one to each detector as ``ctx.records``."""

    __slots__ = ("state", "_expire", "_get")

    def __init__(self, state: MutableMapping[str, Any], expire: Expire) -> None:
        self.state = state
        self._expire = expire
        self._get = state.get  # bound once: this is the detectors' hottest path

    def get(self, kind: str, *ids: str) -> dict | None:
        """The record, or None. Changes to it count only once it is saved."""
        state_key = SEP.join((kind, *ids))  # record_key's fast path, inline: the hottest call of all
        if "\\" in state_key or state_key.count(SEP) != len(ids):
            state_key = record_key(kind, *ids)
        return self._get(state_key)

    def has(self, kind: str, *ids: str) -> bool:
        return record_key(kind, *ids) in self.state

    def save(self, kind: str, *ids: str, record: dict, until: float) -> None:
        """Write ``record`` back; it is deleted once event time passes ``until`` (which may move
        later with each save; a record never saved before is scheduled)."""
        state_key = SEP.join((kind, *ids))  # as in get()
        if "\\" in state_key or state_key.count(SEP) != len(ids):
            state_key = record_key(kind, *ids)
        before = record.get("until")
        if before is None or until < before:
            self._expire(state_key, until)
        record["until"] = until
        self.state[state_key] = record

    @contextmanager
    def edit(self, kind: str, *ids: str, until: float, new: Callable[[], dict]) -> Iterator[dict]:
        """The record (or ``new()``), saved with ``until`` when the block ends."""
        record = self.get(kind, *ids)
        if record is None:
            record = new()
        yield record
        self.save(kind, *ids, record=record, until=until)

    def delete(self, kind: str, *ids: str) -> None:
        self.state.pop(record_key(kind, *ids), None)

    def of_kind(self, kind: str) -> Iterator[tuple[list[str], dict]]:
        """(ids, record) of every record of one kind (the API's read model; not for hot paths)."""
        prefix = kind + SEP
        for state_key, record in list(self.state.items()):
            if state_key.startswith(prefix):
                yield parse(state_key)[1], record
