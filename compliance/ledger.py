"""The order ledger: every regulator order followed from issue to its end.

Keyed by ``order_id``: an order and the platform's actions about it meet in one state record.
Nothing here depends on arrival order between the two: actions that arrive before their order
are kept, and decisions about the deadline wait for the watermark, so ``replay`` and a Kafka
worker reach the same verdicts.

States: ``issued`` -> ``acknowledged`` -> ``in_progress`` -> ``completed``; or ``refused``,
``disputed``, ``extension_requested``; ``overdue`` once the deadline passed without
``completed``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from events import Alert, AnyEvent, Context, Order, PlatformAction, format_ts, raise_alert

# Which order measure an action satisfies. ``completed`` claims every measure.
MEASURE_BY_ACTION = {
    "content_removed": "remove_content",
    "account_suspended": "suspend_account",
    "amplification_stopped": "stop_amplification",
    "evidence_preserved": "preserve_evidence",
}
ORDER_REFS = ["Criminal Law Art. 286-1", "Interpretation 2019-15 Art. 2"]


class LedgerSettings(BaseModel):
    """The ledger has no thresholds yet; deadlines come from the orders themselves."""


def _blank() -> dict[str, Any]:
    return {"order": None, "actions": [], "alerts": {}, "fired": []}


def measures_done(record: dict, until: float) -> set[str]:
    """Measures the platform's actions with event time <= ``until`` satisfied."""
    order = record["order"] or {}
    done: set[str] = set()
    for ts, _aid, action in record["actions"]:
        if ts > until:
            break
        if action == "completed":
            done.update(order.get("measures", []))
        elif action in MEASURE_BY_ACTION:
            done.add(MEASURE_BY_ACTION[action])
    return done


def ledger_state(record: dict, watermark: float) -> str:
    """The order's state as of ``watermark`` (event time)."""
    order = record["order"]
    actions = [a for ts, _i, a in record["actions"] if ts <= watermark]
    if "completed" in actions:
        return "completed"
    if order is not None and watermark >= order["deadline"]:
        return "overdue"
    for final in ("refused", "disputed", "extension_requested"):
        if final in actions:
            return final
    if any(a in MEASURE_BY_ACTION for a in actions):
        return "in_progress"
    if "acknowledged" in actions:
        return "acknowledged"
    return "issued"


class OrderLedger:
    """Raises ``order_overdue`` at the deadline and ``order_refused`` on refusal."""

    name: ClassVar[str] = "orders"
    event_types: ClassVar[frozenset[str]] = frozenset({"order", "platform_action"})
    ordered: ClassVar[bool] = False  # verdicts wait for the watermark; arrival order does not matter

    def __init__(self, settings: LedgerSettings | None = None) -> None:
        self.settings = settings or LedgerSettings()

    def keys(self, event: AnyEvent) -> list[str]:
        if isinstance(event, Order):
            return [event.order_id]
        if isinstance(event, PlatformAction) and event.order_id is not None:
            return [event.order_id]
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        record = ctx.state.get(key) or _blank()
        alerts: list[Alert] = []
        if isinstance(event, Order):
            if record["order"] is not None:
                return []  # a duplicate delivery
            record["order"] = {
                "platform": event.platform,
                "regulator": event.regulator,
                "issued": event.epoch,
                "deadline": event.deadline_epoch,
                "legal_basis": event.legal_basis,
                "measures": list(event.measures),
                "items": [item.key for item in event.items],
                "case_id": event.case_id,
            }
            ctx.set_timer(key, event.deadline_epoch)
        elif isinstance(event, PlatformAction):
            if any(aid == event.action_id for _ts, aid, _a in record["actions"]):
                return []
            record["actions"].append([event.epoch, event.action_id, event.action])
            record["actions"].sort()
            if event.action == "refused" and "refused" not in record["fired"]:
                record["fired"].append("refused")
                alerts.append(self._refused(record, key, event.action_id, event.epoch, event.platform))
        ctx.state[key] = record
        return alerts

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        record = ctx.state.get(key)
        if record is None or record["order"] is None:
            return []
        order = record["order"]
        deadline = order["deadline"]
        actions = [a for ts, _i, a in record["actions"] if ts <= deadline]
        alerts: list[Alert] = []
        if "completed" not in actions and "overdue" not in record["fired"]:
            record["fired"].append("overdue")
            missing = [m for m in order["measures"] if m not in measures_done(record, deadline)]
            alerts.append(
                raise_alert(
                    record["alerts"], kind="order_overdue", subject=("order", key), ts=deadline,
                    severity="warning", platform=order["platform"],
                    summary=f"Order {key} from {order['regulator']} passed its deadline without completion "
                    f"({len(missing)} of {len(order['measures'])} measures missing).",
                    legal_refs=ORDER_REFS,
                    evidence={"order_id": key, "deadline": format_ts(deadline), "missing_measures": missing,
                              "items": order["items"]},
                )
            )
            if "disputed" in actions and "refused" not in record["fired"]:
                # A dispute that is not followed by compliance is a refusal in effect.
                record["fired"].append("refused")
                dispute = next(aid for ts, aid, a in record["actions"] if a == "disputed" and ts <= deadline)
                alerts.append(self._refused(record, key, dispute, deadline, order["platform"]))
        ctx.state[key] = record
        return alerts

    def _refused(self, record: dict, key: str, action_id: str, ts: float, platform: str) -> Alert:
        order = record["order"] or {}
        return raise_alert(
            record["alerts"], kind="order_refused", subject=("order", key), ts=ts, severity="critical",
            platform=order.get("platform", platform),
            summary=f"Platform {order.get('platform', platform)} refused order {key} (candidate for "
            "refusing to perform information-network security duties if the content keeps spreading).",
            legal_refs=ORDER_REFS,
            evidence={"order_id": key, "action_id": action_id},
        )
