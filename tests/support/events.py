"""Small builders for contract events in tests (dicts, as they arrive on the wire)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import orjson

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone(timedelta(hours=8)))
_ids = itertools.count(1)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def order(oid: str, minute: float, deadline_min: float, measures=("remove_content",), items=None, platform="weibo",
          **extra) -> dict:
    return {"type": "order", "event_id": f"e{next(_ids)}", "platform": platform, "ts": at(minute),
            "order_id": oid, "regulator": "cac", "deadline": at(deadline_min), "legal_basis": "规定 第20条",
            "measures": list(measures), "items": items or [{"post_id": "p1"}], **extra}


def action(aid: str, oid: str, minute: float, kind: str, platform="weibo", **extra) -> dict:
    return {"type": "platform_action", "event_id": f"e{next(_ids)}", "platform": platform, "ts": at(minute),
            "action_id": aid, "order_id": oid, "action": kind, **extra}


def tick(minute: float) -> dict:
    return {"type": "tick", "ts": at(minute)}


def post(pid: str, minute: float, account="a1", kind="original", **extra) -> dict:
    return {"type": "post", "event_id": f"e{next(_ids)}", "platform": "weibo", "ts": at(minute),
            "post_id": pid, "account_id": account, "kind": kind, **extra}


def lines(events: list[dict]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def feed(engine, events: list[dict], sources: list[str] | None = None) -> list[dict]:  # noqa: ANN001 - an Engine
    """Every alert ``engine`` raises over ``events`` (wire dicts, decoded as a worker would), in order."""
    from events import decode

    out = []
    for i, raw in enumerate(events):
        event = decode(orjson.dumps(raw), "t")
        out.extend(a.model_dump() for a in engine.process(event, source=sources[i] if sources else None))
    return out
