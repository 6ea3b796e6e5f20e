"""The order ledger's read model: what the API and the dashboard show of the ledger's state.

Kept beside the ledger (``detectors/orders.py``), not inside it: the ledger decides, this module
only reads its records (orders, their states, platforms' scorecards) and never writes them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from detectors.orders import TWO_YEARS, action_counts, ledger_state, measures_done
from events import format_ts
from events.records import parse, record_key


def orders_of(state, platform: str | None = None,
              on_skip: Callable[[], None] | None = None) -> list[tuple[str, str, dict]]:
    """(platform, order_id, record) of every order in a ledger state mapping.

    Ids are free text, so a key of order shape may hold something else (state written before ids were
    escaped in keys: a platform ``x<TAB>o`` had its refusals at ``x<TAB>o<TAB>refusals``). Only a record that is an order of
    the key's platform is returned; any other is left out and reported to ``on_skip``."""
    out = []
    for key, record in list(state.items()):
        kind, parts = parse(key) if isinstance(key, str) else ("", [])
        if kind == "order" and len(parts) == 2 and (platform is None or parts[0] == platform):
            if _is_order_record(parts[0], record):
                out.append((parts[0], parts[1], record))
            elif on_skip is not None:
                on_skip()
    return sorted(out, key=lambda row: row[:2])


def _is_order_record(platform: str, record: Any) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("actions"), list) or "order" not in record:
        return False
    order = record["order"]
    return order is None or (isinstance(order, dict) and order.get("platform") == platform)


def _ts(epoch: float) -> str | None:
    """RFC 3339, or None for a time no calendar year 1-9999 holds: the views show the rest of the
    record rather than fail (``format_ts`` raises on such times; input bounds are not relied on)."""
    try:
        return format_ts(epoch)
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def describe(order_id: str, record: dict, now: float) -> dict:
    """An order as the API shows it: state, measures done and missing, deadline. Actions are the
    ones the ledger keeps (see ``ACTIONS_KEPT``) with ``action_counts`` for all of them."""
    order = record["order"] or {}
    deadline = order.get("deadline")
    done = measures_done(record, now)
    return {"order_id": order_id, "platform": order.get("platform"), "regulator": order.get("regulator"),
            "state": ledger_state(record, now), "issued": _ts(order["issued"]) if order else None,
            "deadline": _ts(deadline) if deadline else None, "measures": order.get("measures", []),
            "measures_done": sorted(m for m in order.get("measures", []) if m in done),
            "measures_missing": [m for m in order.get("measures", []) if m not in done],
            "items": order.get("items", []), "actions": [{"ts": _ts(t), "action_id": i, "action": a}
                                                         for t, i, a in record["actions"]],
            "action_counts": action_counts(record), "after_deadline": record["after"]}


def scorecard(state, platform: str, now: float, on_skip: Callable[[], None] | None = None) -> dict:
    """Per-platform figures for regulators, from the ledger state as of ``now`` (event time).

    Built order by order: one that cannot be read is left out (reported to ``on_skip``) rather
    than failing the platform's whole scorecard."""
    received = on_time = open_late = 0
    to_ack, to_comply = [], []
    for _p, _oid, record in orders_of(state, platform, on_skip):
        try:
            figures = _order_figures(record, now)
        except Exception:  # noqa: BLE001 - whatever is wrong with one record, the others count
            if on_skip is not None:
                on_skip()
            continue
        if figures is None:
            continue
        ack, comply, in_time, late = figures
        received += 1
        on_time += in_time
        open_late += late
        if ack is not None:
            to_ack.append(ack)
        if comply is not None:
            to_comply.append(comply)
    refusals = (state.get(record_key("refusals", platform)) or {}).get("refusals", [])
    recent = 0
    for refusal in refusals if isinstance(refusals, list) else []:
        try:
            recent += refusal[0] > now - TWO_YEARS
        except (TypeError, IndexError, KeyError):
            if on_skip is not None:
                on_skip()
    return {"platform": platform, "orders_received": received, "completed_on_time": on_time,
            "median_seconds_to_acknowledge": statistics.median(to_ack) if to_ack else None,
            "median_seconds_to_comply": statistics.median(to_comply) if to_comply else None,
            "refusals_within_two_years": recent,
            "open_past_deadline": open_late, "as_of": _ts(now) if now > 0 else None}


def _order_figures(record: dict, now: float) -> tuple[float | None, float | None, bool, bool] | None:
    """One order's share of a scorecard: (seconds to acknowledge, seconds to comply, completed
    on time, open past deadline); None for actions whose order has not arrived."""
    order = record["order"]
    if order is None:
        return None
    acks = [t for t, _i, a in record["actions"] if a == "acknowledged"]
    done = [t for t, _i, a in record["actions"] if a == "completed"]
    ack = acks[0] - order["issued"] if acks else None
    if done:
        return ack, done[0] - order["issued"], done[0] <= order["deadline"] and not record.get("live"), False
    return ack, None, False, now > order["deadline"]
