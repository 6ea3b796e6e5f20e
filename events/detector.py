"""The interface every detector implements, and the context the engine hands it.

A detector is a plain object: validated event in, alerts out. It never touches Kafka, files
or clocks. Its state is a set of JSON-able records, ``ctx.records`` (see
:mod:`events.records`): a ``dict`` in process, a changelogged Faust table on Kafka. A record is
named by its kind and ids and saved with its expiry; a change not saved is not seen by a table.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any, ClassVar, Protocol

from events.alerts import Alert
from events.models import AnyEvent
from events.records import Records


class Context(Protocol):
    """What a detector may use while handling one key."""

    records: Records  # its state as typed records: the way to read and write it
    state: MutableMapping[str, Any]  # the same state as raw keys (the engine's own bookkeeping)
    watermark: float  # event time (Unix s) up to which the input is taken as complete: the platform's own
    partition: int  # the stage partition: records of ``broadcast`` events are kept per partition

    def set_timer(self, key: str, at: float) -> None:
        """Call ``on_timer(key)`` once the watermark reaches ``at`` (replaces an earlier timer)."""

    def expire(self, key: str, until: float) -> None:
        """Delete ``state[key]`` once the watermark passes its ``"until"`` field.

        Call it once when a record is created; the record's own ``"until"`` (event time) may be
        moved later by the detector at any time, and the engine re-checks it before deleting.
        """

    def emit(self, detector: str, event: AnyEvent) -> None:
        """Hand ``event`` to another (ordered) detector, which keys it its own way: re-keying.

        The detector must be named in ``emits``. In process the event joins that stage's buffer
        at once; on Kafka it goes to that stage's topic, with this stage's event time behind it.
        """


class Detector(Protocol):
    """A rule over one keyed stream of events.

    ``name`` names its state. ``event_types`` are the ``type`` values it takes. ``keys`` says
    which state keys an event touches: this is the partitioning, so two events that must meet in
    one state share a key.
    """

    name: ClassVar[str]
    event_types: ClassVar[frozenset[str]]
    # The alert kinds it raises: each of the contract's kinds has exactly one detector
    # (checked by streams.registry), so a kind leads to one file.
    raises: ClassVar[tuple[str, ...]]
    # True: events reach on_event in (ts, event_id) order once the watermark passes them,
    # whatever order they arrived in. For detectors whose verdicts depend on order.
    ordered: ClassVar[bool]
    # Optional: names of the detectors it may ``ctx.emit`` events to (they come after it).
    # emits: ClassVar[frozenset[str]]
    # Optional: the Kafka stage it runs in (default: its name). Detectors with the same key
    # share a stage, so an event crosses Kafka once for all of them (see streams.registry).
    # stage: ClassVar[str]
    # Optional: event types that reach every partition of its stage, whatever their key: few
    # events that all the others are checked against (orders, for OrderWatch). Records made
    # from them carry ``ctx.partition``: each partition keeps its own copy.
    # broadcast: ClassVar[frozenset[str]]
    # Optional: True when its records mix platforms (the targets' whole record). Its events are
    # handed over by the earliest platform's time rather than each by its own (streams.engine).
    # spans_platforms: ClassVar[bool]
    # Optional: platform_of(state_key) -> str, the platform a record belongs to, whose time it
    # expires by, when that is not the record's first id (events.records).
    # Optional: event types it takes only when another detector emits them to it, never
    # from the input (the ledger's posts come from OrderWatch).
    # receives: ClassVar[frozenset[str]]
    # Optional: refuse(event) -> str | None, why a valid event cannot be routed (it becomes a
    # dead letter with that error where it enters; cascades keyed by root need ``root_id``).

    def keys(self, event: AnyEvent) -> Iterable[str]: ...

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]: ...

    def on_timer(self, key: str, ctx: Context) -> list[Alert]: ...
