"""A detector's state as typed records: ``ctx.records.get("pair", platform, a, b)``.

Detectors name a record by its kind and ids; the key is built here and nowhere else
(:func:`record_key`, ids escaped by :mod:`events.keys`), and the API's read model, the engine
and tests read keys back with :func:`parse`. Every record carries ``until`` (event time): saving
it writes it back to the state (a dict in process, a changelogged Faust table on Kafka) and
schedules its expiry, so a detector cannot change a record and forget to write it or forget to
make it expire. :meth:`Records.edit` does both around a ``with`` block.

A detector may also find records of one kind by *terms* they contain (the water army finds
near-duplicate texts by their LSH bands): it declares ``indexes = {kind: Indexed(terms_of,
keep)}``, and :meth:`Records.find` answers from an index kept in memory, beside the state
rather than in it.
The index follows every save, delete and expiry, and is rebuilt from the records themselves
when the engine (re)opens a partition, so it costs no state writes: eight LSH bucket records
per new text were half of a Kafka worker's changelog messages (issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from events.keys import SEP, esc, parts

Expire = Callable[[str, float], None]
TermsOf = Callable[[list[str], dict], Iterable[str]]  # a record's terms (from its ids and itself), for an index


@dataclass(frozen=True)
class Indexed:
    """How a detector's records of one kind are indexed: their terms, and how many records a
    term keeps at most (those that live longest: latest ``until``, then key), which bounds
    the work of a crowded term whatever the input."""

    terms_of: TermsOf
    keep: int


def record_key(kind: str, *ids: str) -> str:
    """The state key of one record: its kind, then its ids, escaped."""
    key = kind + SEP + SEP.join(ids) if ids else kind
    if "\\" in key or key.count(SEP) != len(ids):  # some id holds a tab or a backslash (rare)
        return SEP.join([kind, *[esc(i) for i in ids]])
    return key


def parse(key: str) -> tuple[str, list[str]]:
    """(kind, ids) of a key :func:`record_key` built."""
    kind, *ids = parts(key)
    return kind, ids


class Index:
    """Keys of one kind's records by term, in memory: term -> {key: the record's ``until``}.

    A term keeps at most ``keep`` keys, evicting the least (``until``, key). The result is the
    same whether the index was built save by save or read back from a store in any order: the
    records of a kind that is indexed are saved once (their ``until`` never moves), and expiry
    deletes them in ``until`` order, so a key evicted here is gone from the state no later
    than any key kept in its place."""

    __slots__ = ("terms_of", "keep", "by_term", "of_key")

    def __init__(self, spec: Indexed) -> None:
        self.terms_of = spec.terms_of
        self.keep = spec.keep
        self.by_term: dict[str, dict[str, float]] = {}
        self.of_key: dict[str, tuple[str, ...]] = {}

    def put(self, key: str, ids: list[str], record: dict) -> None:
        terms = tuple(self.terms_of(ids, record))
        if self.of_key.get(key) != terms:
            self.drop(key)
            if not terms:
                return
            self.of_key[key] = terms
        until = record["until"]
        for term in terms:
            keys = self.by_term.setdefault(term, {})
            keys[key] = until
            if len(keys) > self.keep:
                least = min(keys.items(), key=lambda kv: (kv[1], kv[0]))[0]
                del keys[least]
                self._unlink(least, term)

    def _unlink(self, key: str, term: str) -> None:
        """``key`` no longer under ``term`` (evicted there); forgotten once under no term."""
        terms = tuple(t for t in self.of_key.get(key, ()) if t != term)
        if terms:
            self.of_key[key] = terms
        else:
            self.of_key.pop(key, None)

    def drop(self, key: str) -> None:
        for term in self.of_key.pop(key, ()):
            keys = self.by_term.get(term)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.by_term[term]


class Records:
    """The records of one detector; the engine hands one to each detector as ``ctx.records``."""

    __slots__ = ("state", "_expire", "_get", "indexes")

    def __init__(self, state: MutableMapping[str, Any], expire: Expire,
                 indexes: dict[str, Indexed] | None = None) -> None:
        self.state = state
        self._expire = expire
        self._get = state.get  # bound once: this is the detectors' hottest path
        self.indexes = {kind: Index(spec) for kind, spec in (indexes or {}).items()}

    def get(self, kind: str, *ids: str) -> dict | None:
        """The record, or None. Changes to it count only once it is saved."""
        return self._get(record_key(kind, *ids))

    def has(self, kind: str, *ids: str) -> bool:
        return record_key(kind, *ids) in self.state

    def save(self, kind: str, *ids: str, record: dict, until: float) -> None:
        """Write ``record`` back; it is deleted once event time passes ``until`` (which may move
        later with each save; a record never saved before is scheduled)."""
        key = record_key(kind, *ids)
        before = record.get("until")
        if before is None or until < before:
            self._expire(key, until)
        record["until"] = until
        self.state[key] = record
        index = self.indexes.get(kind)
        if index is not None:
            index.put(key, list(ids), record)

    @contextmanager
    def edit(self, kind: str, *ids: str, until: float, new: Callable[[], dict]) -> Iterator[dict]:
        """The record (or ``new()``), saved with ``until`` when the block ends."""
        record = self.get(kind, *ids)
        if record is None:
            record = new()
        yield record
        self.save(kind, *ids, record=record, until=until)

    def delete(self, kind: str, *ids: str) -> None:
        key = record_key(kind, *ids)
        self.state.pop(key, None)
        self.forget(key)

    def find(self, kind: str, term: str) -> list[tuple[list[str], dict]]:
        """(ids, record) of the records of ``kind`` under ``term`` (at most its ``keep``), in key
        order. ``kind`` must be one of the detector's ``indexes``."""
        keys = self.indexes[kind].by_term.get(term)
        if not keys:
            return []
        found = []
        for key in sorted(keys):
            record = self._get(key)
            if record is not None:
                found.append((parse(key)[1], record))
        return found

    def restore(self, key: str, record: dict) -> None:
        """A record read back from the state (the engine, when it opens a partition): indexed."""
        if self.indexes:
            kind, ids = parse(key)
            index = self.indexes.get(kind)
            if index is not None:
                index.put(key, ids, record)

    def forget(self, key: str) -> None:
        """A record gone (deleted or expired): out of every index."""
        if self.indexes:
            index = self.indexes.get(key.split(SEP, 1)[0])
            if index is not None:
                index.drop(key)

    def of_kind(self, kind: str) -> Iterator[tuple[list[str], dict]]:
        """(ids, record) of every record of one kind (the API's read model; not for hot paths)."""
        prefix = kind + SEP
        for key, record in list(self.state.items()):
            if key.startswith(prefix):
                yield parse(key)[1], record
