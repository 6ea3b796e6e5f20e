"""The ``Alert`` output record, its deterministic id, and version bookkeeping.

An alert's id comes from what it is about (kind + subject + window), never from a counter or a
clock, so the same situation gets the same id in ``replay``, in ``demo`` and on any number of
Kafka workers. Its ``version`` grows when the finding grows; consumers keep the latest.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from events.keys import scoped
from events.models import format_ts

Severity = Literal["info", "warning", "critical"]
SubjectType = Literal["campaign", "post", "target", "order", "platform", "account"]

AlertKind = Literal[
    "water_army_campaign",
    "viral_spread",
    "legal_threshold",
    "violence_surge",
    "illegal_marketing",
    "order_overdue",
    "order_refused",
    "continued_dissemination",
    "duty_refusal",
]
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)  # the contract's kinds; no detector may invent one


class Subject(BaseModel):
    model_config = ConfigDict(frozen=True)
    type: SubjectType
    id: str


class Alert(BaseModel):
    """One version of a finding, as it goes out on the ``alerts`` topic."""

    model_config = ConfigDict(extra="allow")

    alert_id: str
    version: int = Field(ge=1)
    kind: AlertKind
    severity: Severity
    platform: str
    subject: Subject
    ts: str
    first_ts: str
    summary: str
    legal_refs: list[str] = []
    aggravating: list[str] = []
    evidence: dict[str, Any] = {}

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


REGULATOR = "regulator"  # the audience of a finding that spans platforms, in full


def alert_id(kind: str, subject_type: str, subject_id: str, window: str = "", platform: str = "",
             audience: str = "") -> str:
    """``<kind>-<20 hex>``: readable kind, fixed length whatever the subject id.

    The platform is part of it: two platforms may use the same order, post or account ids, and
    one must never overwrite, hide or de-duplicate away the other's alert. Parts are length-
    prefixed, so no id content can make two different situations hash the same input.
    """
    digest = hashlib.blake2b(scoped(kind, subject_type, subject_id, window, platform, audience).encode(),
                             digest_size=10)
    return f"{kind}-{digest.hexdigest()}"


def raise_alert(
    book: MutableMapping[str, list],
    *,
    kind: AlertKind,
    subject: tuple[str, str],
    window: str = "",
    ts: float,
    severity: Severity,
    platform: str,
    summary: str,
    legal_refs: list[str] | None = None,
    aggravating: list[str] | None = None,
    evidence: dict[str, Any] | None = None,
    shadow: bool = False,
    audience: str = "",
) -> Alert:
    """Build the next version of an alert, recording ``[version, first_ts]`` in ``book``.

    ``book`` is a plain JSON-able dict the detector keeps inside its own state, so versions
    survive restarts with the rest of that state. ``shadow`` marks an alert raised by a detector
    in shadow mode: recorded and counted, not delivered. ``audience="regulator"`` marks a finding
    that spans platforms, in full: only the regulator's API role and webhook endpoints with no
    platform filter get it (each platform gets its own part as an alert of its own).
    """
    aid = alert_id(kind, subject[0], subject[1], window, platform, audience)
    version, first = book.get(aid, (0, ts))
    book[aid] = [version + 1, first]
    return Alert(
        alert_id=aid,
        version=version + 1,
        kind=kind,
        severity=severity,
        platform=platform,
        subject=Subject(type=subject[0], id=subject[1]),
        ts=format_ts(ts),
        first_ts=format_ts(first),
        summary=summary,
        legal_refs=legal_refs or [],
        aggravating=aggravating or [],
        evidence=evidence or {},
        **({"shadow": True} if shadow else {}),
        **({"audience": audience} if audience else {}),
    )
