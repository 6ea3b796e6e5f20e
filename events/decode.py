"""Turning raw bytes into validated events, or into dead letters that say why not.

One function, :func:`decode`, is used by ``replay``, ``demo`` and the Kafka worker, so the
same line is accepted or rejected the same way everywhere. It reads no clock: the entry points
(``LocalPipeline.feed``, the worker's ingest agent) pass the wall clock in as ``now``, so an
event from the future is refused where it enters and a replay of past events stays the same
on every run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import orjson
from pydantic import TypeAdapter, ValidationError

from events.models import TOPIC_BY_TYPE, AnyEvent, InputEvent, StageEvent, format_ts

MAX_MESSAGE = 1 << 20  # 1 MiB
MAX_RAW_KEPT = 64 << 10  # dead letters keep at most 64 KiB of the original
MAX_FUTURE_S = 86_400.0  # default of STORMWATCH_MAX_FUTURE_S: how far ahead of the wall clock ts may be

_adapter: TypeAdapter[AnyEvent] = TypeAdapter(InputEvent)
_stage_adapter: TypeAdapter[AnyEvent] = TypeAdapter(StageEvent)  # also what stages hand each other


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input. ``reason`` is a short label for metrics; ``error`` is for people."""

    error: str
    reason: str
    raw: str
    source: str

    def to_record(self) -> dict:
        """The contract's dead-letter record; ``ts`` is the wall-clock time of rejection."""
        return {
            "error": self.error,
            "raw": self.raw,
            "source": self.source,
            "ts": format_ts(time.time()),
            "reason": self.reason,
        }


def raw_text(raw: bytes) -> str:
    """What a dead letter keeps of a rejected message: its first 64 KiB, as text."""
    return raw[:MAX_RAW_KEPT].decode("utf-8", errors="replace")


def _describe(err: ValidationError) -> tuple[str, str]:
    """Name the field and the problem of the first error: ``post.ts: Input should have timezone info``."""
    first = err.errors(include_url=False)[0]
    kind = first["type"]
    if kind == "json_invalid":
        return "invalid_json", f"not valid JSON or not UTF-8: {first['msg'].removeprefix('Invalid JSON: ')}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        if not first["loc"]:
            return "not_object", "not a JSON object"
    if kind == "union_tag_not_found":
        return "missing_type", "type: missing (every event needs a 'type')"
    if kind == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        return "unknown_type", f"type: unknown event type {tag!r}"
    field = ".".join(str(part) for part in first["loc"]) or "(event)"
    got = first.get("input")
    shown = "" if isinstance(got, (dict, list)) or kind == "missing" else f" (got {json.dumps(got, ensure_ascii=False)[:80]})"
    more = len(err.errors()) - 1
    extra = f"; and {more} more error{'s' if more > 1 else ''}" if more else ""
    reason = "missing_field" if kind == "missing" else "invalid_field"
    return reason, f"{field}: {first['msg']}{shown}{extra}"


def decode(raw: bytes, source: str, now: float | None = None,
           max_future_s: float = MAX_FUTURE_S, stage: bool = False) -> AnyEvent | DeadLetter:
    """Validate one JSON message. Never raises: bad input becomes a :class:`DeadLetter`.

    ``now`` (Unix seconds, the wall clock where the event enters): an event whose ``ts`` is more
    than ``max_future_s`` ahead of it is refused (``future_ts``), because event time only moves
    forward: one post dated next year would fire every deadline and expire all state. Without
    ``now`` (tests, events re-read from a stage's own buffer) there is no such check.
    ``stage``: read from a stage topic or buffer, which also carry what stages hand each other.
    """
    if len(raw) > MAX_MESSAGE:
        return DeadLetter(f"message is {len(raw)} bytes, over the 1 MiB limit", "too_large", raw_text(raw), source)
    try:
        event = (_stage_adapter if stage else _adapter).validate_json(raw, strict=True)
    except ValidationError as err:
        reason, error = _describe(err)
        return DeadLetter(error, reason, raw_text(raw), source)
    if now is not None and event.epoch > now + max_future_s:
        wall = format_ts(now)
        error = (f"{event.type}.ts: {event.epoch - now:.0f} s ahead of the wall clock ({wall}), more than the "
                 f"{max_future_s:g} s allowed (STORMWATCH_MAX_FUTURE_S) (got {event.ts.isoformat()})")
        return DeadLetter(error, "future_ts", raw_text(raw), source)
    return event


KEY_FIELD = {"post": "post_id", "engagement": "post_id", "report": "report_id", "order": "order_id", "case": "case_id"}


def route(line: bytes) -> tuple[str, bytes | None] | None:
    """(topic, key) for a line, ``("tick", None)`` for ticks, None when it cannot be routed."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    etype = obj.get("type")
    if etype == "tick":
        return "tick", None
    if etype not in TOPIC_BY_TYPE:
        return None
    if etype == "platform_action":
        key = obj.get("order_id") or obj.get("action_id")
    else:
        key = obj.get(KEY_FIELD[etype])
    return TOPIC_BY_TYPE[etype], key.encode() if isinstance(key, str) else None
