"""The order ledger: every regulator order followed from issue to its end.

States: ``issued`` -> ``acknowledged`` -> ``in_progress`` -> ``completed``; or ``refused``,
``disputed``, ``extension_requested``; ``overdue`` once the deadline passed without
``completed``. Which measures the order demands and which the platform's actions satisfied
are kept per order; its items (posts, accounts, hashtags) are watched in the post and
engagement streams, because an item the platform says it removed but that is still viewed,
reposted or posted is not removed.

Alerts, all at the event time of what they report:

* ``order_overdue`` at the deadline when ``completed`` did not come by then (missing measures
  named); ``order_refused`` on refusal, or at the deadline after a dispute without compliance.
* ``continued_dissemination`` when ordered items spread after the deadline (views, reposts,
  posts, accounts reached after it), also when the platform claimed removal or completion;
  re-reported as the figures double.
* ``duty_refusal`` (a candidate case under Criminal Law Art. 286-1): a valid order (a regulator
  with network-security duties, a legal basis, measures, a deadline after issue), refused or
  past its deadline with measures missing or items still live, and at least one ground of
  Interpretation 2019-15 measured after the deadline; or, subject the platform, refusals of
  several orders within two years (``repeat_refusal_2y``); or, subject the platform, the figures
  of several non-complied orders within two years added up where no ``case`` dealt with them
  (2019-15 Art. 16, ``aggregation_unhandled_2y``). Nothing when the platform complied in
  time and its items went quiet, whatever happened before.

Two detectors, so a busy platform's posts spread over partitions (issue 15):

* :class:`OrderWatch`, keyed by platform and post, with every order on every partition of its
  stage (orders are few), hands the ledger, as they came, only the posts and engagement that
  touch an ordered item;
* :class:`OrderLedger`, keyed by platform, takes orders, actions, cases and that activity.

Both are ordered: a platform's orders, actions and the activity on its ordered items meet in
one partition of the ledger in event-time order, so arrival order between topics never
changes a verdict.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from compliance import cases
from compliance.cases import TWO_YEARS
from compliance.law import LawSettings
from events import Alert, AnyEvent, Case, Context, Engagement, Order, PlatformAction, Post, format_ts, raise_alert
from events import keys as ids
from events.models import HARMFUL_LABELS
from events.records import parse

MEASURE_BY_ACTION = {
    "content_removed": "remove_content",
    "account_suspended": "suspend_account",
    "amplification_stopped": "stop_amplification",
    "evidence_preserved": "preserve_evidence",
}
ORDER_REFS = ["Criminal Law Art. 286-1", "Interpretation 2019-15 Art. 2"]
ACTIONS_KEPT = 100  # per order: the first actions by (ts, action_id), plus the first of each kind
MAX_ACTS = 1_000  # per platform, the refusals kept for the 2019-15 Art. 16 aggregation (the newest)


class LedgerSettings(BaseModel):
    """Which regulators count, and how long closed orders are remembered."""

    regulators: list[str] = Field(["cac", "public_security", "telecom", "miit"],
                                  description="Departments with network-security oversight duties (2019-15 Art. 2).")
    keep_closed_s: float = Field(90 * 86400, description="A finished order is forgotten this long after its deadline.")


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


def _blank() -> dict[str, Any]:
    return {"order": None, "actions": [], "alerts": {}, "fired": [], "seen": {}, "base": {},
            "after": {"views": 0, "reposts": 0, "items": 0, "reach": 0, "followers": 0}, "spreaders": [],
            "reported": {}}


def post_items(post: Post) -> list[str]:
    """The ordered items a post may touch, each once, in order: the ledger counts per item."""
    return sorted(set(_touched(post)))


def _touched(event: Post | Engagement) -> Iterator[str]:
    """The ordered items an event may touch (the keys an order's ``items`` use): a post itself,
    its account, what it reposts or answers, its hashtags; engagement, its post. Unsorted and
    maybe repeated: OrderWatch only asks whether any is watched."""
    yield f"post:{event.post_id}"
    if isinstance(event, Post):
        yield f"account:{event.account_id}"
        for x in (event.parent_id, event.root_id):
            if x:
                yield f"post:{x}"
        for h in event.hashtags:
            yield f"hashtag:{h.strip('#')}"


def watched(index: dict | None, ts: float) -> bool:
    """Whether an item's record says it is under an order at event time ``ts``. Both detectors
    ask by ``until`` rather than by the record's presence, because each stage sweeps expired
    records on its own watermark."""
    return index is not None and index["until"] >= ts


class OrderWatch:
    """The ledger's filter. Posts and engagement are keyed by platform and post, so they spread
    evenly; orders are few, so each goes to every partition of the stage (``broadcast``), where
    a ``watch`` record per ordered item (kept as long as the ledger keeps the order) says which
    items are under one. A post touching a watched item (itself, what it reposts or answers,
    its account, its hashtags) and engagement on a watched post are handed on to the ledger
    unchanged, once; everything else stops here. So the ledger's platform partition sees
    orders, actions and the rare activity on ordered items, not every post of a busy platform.
    Raises nothing itself."""

    name: ClassVar[str] = "order_watch"
    raises: ClassVar[tuple[str, ...]] = ()
    event_types: ClassVar[frozenset[str]] = frozenset({"order", "post", "engagement"})
    broadcast: ClassVar[frozenset[str]] = frozenset({"order"})  # to every partition of the stage
    ordered: ClassVar[bool] = True  # an order and the posts after it, in event time
    emits: ClassVar[frozenset[str]] = frozenset({"orders"})
    stage: ClassVar[str] = "posts"  # with PostTargets: one stage record serves both

    def __init__(self, settings: LedgerSettings | None = None) -> None:
        self.settings = settings or LedgerSettings()

    @staticmethod
    def platform_of(state_key: str) -> str:
        """The platform a record belongs to (the engine's lanes): a ``watch`` record's second id,
        after the partition's."""
        kind, found = parse(state_key)
        return found[1] if kind == "watch" and len(found) > 1 else found[0] if found else ""

    def keys(self, event: AnyEvent) -> list[str]:
        if isinstance(event, Order):
            return [event.platform]  # broadcast: the key names no partition
        if isinstance(event, (Post, Engagement)):
            return [ids.key(event.platform, event.post_id)]
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        # every partition keeps its own copy of the watch records (the orders reach each)
        here = str(ctx.partition)
        p = event.platform
        if isinstance(event, Order):  # the same until as the ledger's item record
            for item in dict.fromkeys(item.key for item in event.items):
                index = ctx.records.get("watch", here, p, item)
                until = max(index["until"] if index else 0.0, event.deadline_epoch + self.settings.keep_closed_s)
                ctx.records.save("watch", here, p, item, record=index or {}, until=until)
            return []
        get, ts = ctx.records.get, event.epoch
        for item in _touched(event):  # a loop, not any() over a generator: this runs for every post
            if watched(get("watch", here, p, item), ts):
                ctx.emit("orders", event)
                break
        return []

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []


class OrderLedger:
    """Order lifecycle, deadlines, continued dissemination and duty-refusal candidates."""

    name: ClassVar[str] = "orders"
    raises: ClassVar[tuple[str, ...]] = ("order_overdue", "order_refused", "continued_dissemination", "duty_refusal",
                                         "evidence_not_preserved")
    event_types: ClassVar[frozenset[str]] = frozenset({"order", "platform_action", "case"})
    # Posts and engagement come only from OrderWatch: those that touch an ordered item.
    receives: ClassVar[frozenset[str]] = frozenset({"post", "engagement"})
    ordered: ClassVar[bool] = True

    def __init__(self, settings: LedgerSettings | None = None, law: LawSettings | None = None) -> None:
        self.settings = settings or LedgerSettings()
        self.law = law or LawSettings()

    def keys(self, event: AnyEvent) -> list[str]:
        if isinstance(event, PlatformAction) and event.order_id is None:
            return []
        if isinstance(event, Case) and event.subject.type != "platform":
            return []
        return [event.platform]

    # -- events -------------------------------------------------------------------------------

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        p = key  # the platform
        if isinstance(event, Order):
            return self._order(p, event, ctx)
        if isinstance(event, PlatformAction):
            return self._action(p, event, ctx)
        if isinstance(event, Post):
            return self._activity(p, event, ctx)
        if isinstance(event, Engagement):
            return self._engagement(p, event, ctx)
        if isinstance(event, Case):
            return self._case(p, event, ctx)
        return []

    def _case(self, p: str, case: Case, ctx: Context) -> list[Alert]:
        """A sanction or case about the platform: its refusals up to ``decided_at`` are dealt
        with, so the 2019-15 Art. 16 aggregation starts again from the conduct after it."""
        if cases.note_case(ctx.records, p, case) is not None:
            rec = ctx.records.get("conduct", p)
            if rec is not None and any(act[0] <= case.decided_epoch for act in rec["acts"].values()):
                rec["fired"] = []
                ctx.records.save("conduct", p, record=rec, until=rec["until"])
        return []

    def _record(self, p: str, order_id: str, ctx: Context) -> dict:
        return ctx.records.get("order", p, order_id) or _blank()

    def _save(self, p: str, order_id: str, record: dict, ctx: Context) -> None:
        order = record["order"]
        last = record.get("last_action", record["actions"][-1][0]) if record["actions"] else 0.0
        until = (order["deadline"] if order else last) + self.settings.keep_closed_s
        ctx.records.save("order", p, order_id, record=record, until=until)

    def _order(self, p: str, event: Order, ctx: Context) -> list[Alert]:
        record = self._record(p, event.order_id, ctx)
        if record["order"] is not None:
            return []  # a duplicate delivery
        items = [item.key for item in event.items]
        record["order"] = {
            "platform": event.platform, "regulator": event.regulator, "issued": event.epoch,
            "deadline": event.deadline_epoch, "legal_basis": event.legal_basis, "measures": list(event.measures),
            "items": items, "case_id": event.case_id,
        }
        for item in items:
            index = ctx.records.get("item", p, item) or {"orders": []}
            if event.order_id not in index["orders"]:
                index["orders"].append(event.order_id)
            until = max(index.get("until", 0), event.deadline_epoch + self.settings.keep_closed_s)
            ctx.records.save("item", p, item, record=index, until=until)
        ctx.set_timer(ids.key(p, event.order_id), event.deadline_epoch)
        self._save(p, event.order_id, record, ctx)
        return []

    def _action(self, p: str, event: PlatformAction, ctx: Context) -> list[Alert]:
        if event.order_id is None:  # keys() routes only actions with an order id here
            raise ValueError("platform_action.order_id: missing for an order's action")
        record = self._record(p, event.order_id, ctx)
        if any(aid == event.action_id for _ts, aid, _a in record["actions"]):
            return []
        counts = record.setdefault("counts", action_counts(record))
        counts[event.action] = counts.get(event.action, 0) + 1
        record["last_action"] = max(record.get("last_action", event.epoch), event.epoch)
        record["actions"] = _keep(record["actions"], [event.epoch, event.action_id, event.action])
        alerts: list[Alert] = []
        if event.action == "refused" and "refused" not in record["fired"]:
            alerts += self._refused(p, event.order_id, record, event.action_id, event.epoch, ctx)
        if event.action in ("content_removed", "account_suspended") and "not_preserved" not in record["fired"]:
            alerts += self._not_preserved(event, record)
        self._save(p, event.order_id, record, ctx)
        return alerts

    def _not_preserved(self, event: PlatformAction, record: dict) -> list[Alert]:
        """The platform removed or suspended before preserving evidence the order asked it to keep:
        once gone, the content cannot prove what it said (2019-15 Art. 5, loss of evidence)."""
        order = record["order"]
        if order is None or "preserve_evidence" not in order["measures"]:
            return []
        if any(a == "evidence_preserved" and ts <= event.epoch for ts, _i, a in record["actions"]):
            return []
        record["fired"].append("not_preserved")
        items = [item.key for item in event.items] or order["items"]
        return [raise_alert(
            record["alerts"], kind="evidence_not_preserved", subject=("order", event.order_id), ts=event.epoch,
            severity="critical", platform=order["platform"],
            summary=f"Platform {order['platform']} reported {event.action} for order {event.order_id} before "
            "preserving the evidence the order required.",
            legal_refs=["Interpretation 2019-15 Art. 5", "Criminal Law Art. 286-1",
                        "Provisions on the Governance of Online Violence Information (2024)"],
            evidence={"order_id": event.order_id, "action_id": event.action_id, "action": event.action,
                      "items": items, "measures": order["measures"]})]

    def _activity(self, p: str, post: Post, ctx: Context) -> list[Alert]:
        """A post that spreads ordered content: the item itself, a repost or answer of it, a
        post by an ordered account, a post under an ordered hashtag."""
        alerts: list[Alert] = []
        for item in post_items(post):
            index = ctx.records.get("item", p, item)
            if not watched(index, post.epoch):
                continue
            for order_id in index["orders"]:
                record = self._record(p, order_id, ctx)
                order = record["order"]
                if order is None or post.epoch <= order["deadline"]:
                    continue
                after = record["after"]
                after["items"] += 1  # activity on an ordered item: it is still up
                if post.kind == "repost" and item.startswith("post:"):
                    after["reposts"] += 1
                if disseminates(post, item):
                    after["spread"] = after.get("spread", 0) + 1
                    if post.account_id not in record["spreaders"] and len(record["spreaders"]) < 5000:
                        record["spreaders"].append(post.account_id)
                        after["followers"] += post.account.followers if post.account else 0
                record.setdefault("live", [])
                if item not in record["live"]:
                    record["live"].append(item)
                alerts += self._after_deadline(p, order_id, record, post.epoch, ctx)
                self._save(p, order_id, record, ctx)
        return alerts

    def _engagement(self, p: str, event: Engagement, ctx: Context) -> list[Alert]:
        item = f"post:{event.post_id}"
        index = ctx.records.get("item", p, item)
        if not watched(index, event.epoch):
            return []
        alerts: list[Alert] = []
        now = {"views": event.views, "reposts": event.reposts, "reach": event.reach_accounts}
        for order_id in index["orders"]:
            record = self._record(p, order_id, ctx)
            seen = record["seen"].get(item)
            grown = {k: max(v, seen[k]) if seen else v for k, v in now.items()}  # lower values are stale
            order = record["order"]
            if order is not None and event.epoch > order["deadline"]:
                # The counters as of the deadline; never observed before it, the first observation
                # after it is the base (no evidence of growth yet).
                base = record["base"].setdefault(item, dict(seen or grown))
                delta = {k: grown[k] - base[k] for k in grown}
                previous = record.setdefault("deltas", {}).get(item, {"views": 0, "reposts": 0, "reach": 0})
                for k, field in (("views", "views"), ("reach", "reach")):
                    record["after"][field] += delta[k] - previous[k]
                record["after"]["reposts"] += max(delta["reposts"] - previous["reposts"], 0)
                record["deltas"][item] = delta
                if delta["views"] > 0 or delta["reposts"] > 0:
                    record.setdefault("live", [])
                    if item not in record["live"]:
                        record["live"].append(item)
                    alerts += self._after_deadline(p, order_id, record, event.epoch, ctx)
            record["seen"][item] = grown
            self._save(p, order_id, record, ctx)
        return alerts

    # -- deadlines and verdicts -----------------------------------------------------------------

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        p, order_id = ids.parts(key)
        record = ctx.records.get("order", p, order_id)
        if record is None or record["order"] is None:
            return []
        order = record["order"]
        deadline = order["deadline"]
        actions = [a for ts, _i, a in record["actions"] if ts <= deadline]
        alerts: list[Alert] = []
        if "completed" not in actions and "overdue" not in record["fired"]:
            record["fired"].append("overdue")
            missing = [m for m in order["measures"] if m not in measures_done(record, deadline)]
            alerts.append(raise_alert(
                record["alerts"], kind="order_overdue", subject=("order", order_id), ts=deadline,
                severity="warning", platform=order["platform"],
                summary=f"Order {order_id} from {order['regulator']} passed its deadline without completion "
                f"({len(missing)} of {len(order['measures'])} measures missing).",
                legal_refs=ORDER_REFS,
                evidence={"order_id": order_id, "deadline": format_ts(deadline), "missing_measures": missing,
                          "items": order["items"]}))
            if "disputed" in actions and "refused" not in record["fired"]:
                # A dispute that is not followed by compliance is a refusal in effect.
                dispute = next(aid for ts, aid, a in record["actions"] if a == "disputed" and ts <= deadline)
                alerts += self._refused(p, order_id, record, dispute, deadline, ctx)
        ctx.records.save("order", p, order_id, record=record, until=record["until"])
        return alerts

    def _refused(self, p: str, order_id: str, record: dict, action_id: str, ts: float, ctx: Context) -> list[Alert]:
        record["fired"].append("refused")
        platform = p
        alerts = [raise_alert(
            record["alerts"], kind="order_refused", subject=("order", order_id), ts=ts, severity="critical",
            platform=platform,
            summary=f"Platform {platform} refused order {order_id} (candidate for refusing to perform "
            "information-network security duties if the content keeps spreading).",
            legal_refs=ORDER_REFS, evidence={"order_id": order_id, "action_id": action_id})]
        alerts += self._repeat_refusals(p, order_id, ts, ctx)
        alerts += self._duty(p, order_id, record, ts, ctx)
        return alerts

    def _repeat_refusals(self, p: str, order_id: str, ts: float, ctx: Context) -> list[Alert]:
        """2019-15 Art. 6(2): several refused orders within two years, subject the platform."""
        rec = ctx.records.get("refusals", p) or {"refusals": [], "alerts": {}, "reported": 0}
        rec["refusals"] = [r for r in rec["refusals"] if r[0] > ts - TWO_YEARS] + [[ts, order_id]]
        alerts = []
        limit = self.law.limit("repeat_refusal_2y")
        if len(rec["refusals"]) >= limit and len(rec["refusals"]) > rec["reported"]:
            rec["reported"] = len(rec["refusals"])
            platform = p
            alerts.append(raise_alert(
                rec["alerts"], kind="duty_refusal", subject=("platform", platform), window="repeat_refusal_2y",
                ts=ts, severity="critical", platform=platform,
                summary=f"Platform {platform} refused {len(rec['refusals'])} orders within two years "
                f"(figure {limit}, Interpretation 2019-15 Art. 6(2)): candidate refusal to perform "
                "information-network security duties.",
                legal_refs=["Criminal Law Art. 286-1", "Interpretation 2019-15 Art. 6(2)"],
                evidence={"order_id": order_id, "grounds": ["repeat_refusal_2y"], "refusals": len(rec["refusals"]),
                          "limit": limit, "orders": [o for _t, o in rec["refusals"]]}))
        ctx.records.save("refusals", p, record=rec, until=ts + TWO_YEARS)
        return alerts

    def valid(self, order: dict) -> bool:
        """2019-15 Art. 2: a competent department, a legal basis, clear measures, a deadline after issue."""
        return (order["regulator"] in self.settings.regulators and bool(order["legal_basis"].strip())
                and bool(order["measures"]) and order["deadline"] > order["issued"])

    def grounds(self, record: dict) -> dict[str, int]:
        after = record["after"]
        # 2019-15 Art. 3: accounts the information was sent to (reach), not the accounts that
        # posted; items that disseminate it (see `disseminates`), not every post near it.
        measured = {"dissemination_clicks_50000": after["views"],
                    "dissemination_accounts_2000": after["reach"],
                    "dissemination_items_2000": after.get("spread", 0),
                    "dissemination_followers_30000": after["followers"]}
        return {g: v for g, v in measured.items() if v >= self.law.limit(g)}

    def _after_deadline(self, p: str, order_id: str, record: dict, ts: float, ctx: Context) -> list[Alert]:
        alerts = []
        after, order = record["after"], record["order"]
        reach = after["reach"]
        last = record["reported"]
        grew = not last or any(after[k] >= 2 * max(last.get(k, 0), 1) for k in ("views", "reposts", "items"))
        if after["views"] or after["reposts"] or after["items"]:
            if grew:
                record["reported"] = dict(after)
                claimed = sorted({a for _t, _i, a in record["actions"] if a in ("content_removed", "completed")})
                alerts.append(raise_alert(
                    record["alerts"], kind="continued_dissemination", subject=("order", order_id), ts=ts,
                    severity="critical" if claimed else "warning", platform=order["platform"],
                    summary=f"Items of order {order_id} kept spreading after the deadline: {after['views']:,} views, "
                    f"{after['reposts']:,} reposts, {after['items']:,} posts"
                    + (f" (the platform claimed {', '.join(claimed)})." if claimed else "."),
                    legal_refs=ORDER_REFS,
                    evidence={"order_id": order_id, "items": sorted(record.get("live", [])),
                              "views_after_deadline": after["views"], "reposts_after_deadline": after["reposts"],
                              "accounts_reached_after_deadline": reach, "posts_after_deadline": after["items"],
                              "disseminations_after_deadline": after.get("spread", 0),
                              "disseminating_accounts_after_deadline": len(record["spreaders"]),
                              "platform_claimed": claimed}))
        alerts += self._duty(p, order_id, record, ts, ctx)
        return alerts

    def _duty(self, p: str, order_id: str, record: dict, ts: float, ctx: Context) -> list[Alert]:
        order = record["order"]
        if order is None or not self.valid(order):
            return []
        refused = "refused" in record["fired"]
        past = ts > order["deadline"]
        completed_in_time = any(a == "completed" and t <= order["deadline"] for t, _i, a in record["actions"])
        live = bool(record.get("live"))
        if not (refused or (past and (not completed_in_time or live))):
            return []
        aggregated = self._aggregate(p, order_id, record, ts, ctx)
        grounds = self.grounds(record)
        new = [g for g in grounds if f"duty:{g}" not in record["fired"]]
        if not new:
            return aggregated
        record["fired"] += [f"duty:{g}" for g in new]
        missing = [m for m in order["measures"] if m not in measures_done(record, order["deadline"])]
        refusal = next((aid for _t, aid, a in record["actions"] if a in ("refused", "disputed")), None)
        return [raise_alert(
            record["alerts"], kind="duty_refusal", subject=("order", order_id), ts=ts, severity="critical",
            platform=order["platform"],
            summary=f"Order {order_id}: {'refused' if refused else 'not complied with'} while its items kept "
            f"spreading ({', '.join(sorted(grounds))}): candidate case of refusing to perform "
            "information-network security duties.",
            legal_refs=["Criminal Law Art. 286-1", "Interpretation 2019-15 Art. 2", "Interpretation 2019-15 Art. 3"],
            evidence={"order_id": order_id, "grounds": sorted(grounds), "figures": grounds,
                      "limits": {g: self.law.limit(g) for g in grounds}, "refusal_action_id": refusal,
                      "missing_measures": missing, "views_after_deadline": record["after"]["views"],
                      "accounts_reached_after_deadline": record["after"]["reach"],
                      "disseminations_after_deadline": record["after"].get("spread", 0),
                      "posts_after_deadline": record["after"]["items"]})] + aggregated

    def _aggregate(self, p: str, order_id: str, record: dict, ts: float, ctx: Context) -> list[Alert]:
        """2019-15 Art. 16: a platform's refusals within two years not yet dealt with (多次: as
        many as ``repeat_refusal_2y``) have their figures after the deadline added up, subject the
        platform. An act is dated when it is first judged one; its figures are the order's latest.
        Acts a ``case`` about the platform dealt with (decided at or after them) are left out."""
        window = self.law.limit("aggregation_unhandled_2y") * 86400.0
        rec = ctx.records.get("conduct", p) or {"acts": {}, "fired": [], "alerts": {}}
        after = record["after"]
        acts = rec["acts"]
        first = acts[order_id][0] if order_id in acts else ts
        acts[order_id] = [first, after["views"], after["reach"], after.get("spread", 0), after["followers"]]
        for oid in [o for o, act in acts.items() if act[0] < ts - window]:
            del acts[oid]
        while len(acts) > MAX_ACTS:  # the oldest go first: acts are added in time order
            del acts[next(iter(acts))]
        handled = cases.handled_until(cases.cases_of(ctx.records, p, "platform", p))
        counted = {o: act for o, act in acts.items() if act[0] > handled}
        alerts: list[Alert] = []
        repeat = self.law.limit("repeat_refusal_2y")
        if len(counted) >= repeat:
            summed = {"dissemination_clicks_50000": sum(a[1] for a in counted.values()),
                      "dissemination_accounts_2000": sum(a[2] for a in counted.values()),
                      "dissemination_items_2000": sum(a[3] for a in counted.values()),
                      "dissemination_followers_30000": sum(a[4] for a in counted.values())}
            met = {g: v for g, v in summed.items() if v >= self.law.limit(g)}
            if [g for g in met if g not in rec["fired"]]:
                rec["fired"] = sorted(set(rec["fired"]) | set(met))
                alerts.append(raise_alert(
                    rec["alerts"], kind="duty_refusal", subject=("platform", p), window="aggregation_unhandled_2y",
                    ts=ts, severity="critical", platform=p,
                    summary=f"Platform {p}: {len(counted)} orders not complied with within two years and not yet "
                    f"dealt with reach {', '.join(sorted(met))} together (Interpretation 2019-15 Art. 16): candidate "
                    "refusal to perform information-network security duties.",
                    legal_refs=["Criminal Law Art. 286-1", "Interpretation 2019-15 Art. 3",
                                "Interpretation 2019-15 Art. 16"],
                    evidence={"order_id": order_id, "grounds": sorted(met), "figures": met,
                              "limits": {g: self.law.limit(g) for g in met}, "orders": sorted(counted),
                              "acts": len(counted), "acts_limit": repeat,
                              "excluded_as_dealt_with": sorted(set(acts) - set(counted))}))
        ctx.records.save("conduct", p, record=rec, until=ts + window)
        return alerts


def ledger_detectors(settings: LedgerSettings | None = None, law: LawSettings | None = None) -> list:
    """The order ledger as it runs: its watch first (it hands the ledger activity), then the ledger."""
    return [OrderWatch(settings), OrderLedger(settings, law)]


def _keep(actions: list, entry: list) -> list:
    """``actions`` (sorted) with ``entry`` added, bounded: the first ``ACTIONS_KEPT`` by (ts,
    action_id), plus the first of each kind. Every verdict and figure the ledger derives from
    actions (states, measures done, refusals, on-time completion, times to acknowledge and
    comply, what the platform claimed) depends only on the first action of each kind, so they
    stay exact however many a platform sends, and one action costs O(ACTIONS_KEPT), not a scan
    and sort of everything it sent before (20,000 actions on one order took 11-20 s)."""
    bisect.insort(actions, entry)
    if len(actions) <= ACTIONS_KEPT:
        return actions
    kinds: set[str] = set()
    kept = []
    for n, (ts, aid, kind) in enumerate(actions):
        if n < ACTIONS_KEPT or kind not in kinds:
            kept.append([ts, aid, kind])
        kinds.add(kind)
    return kept


def action_counts(record: dict) -> dict[str, int]:
    """Actions received per kind, including those past the kept list. An action dropped from
    the list is no longer recognised as a duplicate, so one re-delivered after the engine's
    dedupe window counts again; the kept list and every verdict are unaffected."""
    if "counts" in record:
        return dict(record["counts"])
    counts: dict[str, int] = {}
    for _t, _i, kind in record["actions"]:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def disseminates(post: Post, item: str) -> bool:
    """Whether a post after the deadline disseminates the ordered illegal information (2019-15
    Art. 3(2) counts those only): the ordered post itself or a repost of it, or a post carrying
    a harmful label. A comment, a rebuttal ("这是谣言，别信") or an unlabelled post under an
    ordered hashtag or by an ordered account is activity on the item, not dissemination. Copies
    of the ordered text are not recognised yet (the ledger does not keep the ordered post's text)."""
    if HARMFUL_LABELS & set(post.labels):
        return True
    if item.startswith("post:"):
        ordered = item.removeprefix("post:")
        return post.post_id == ordered or (post.kind == "repost" and ordered in (post.parent_id, post.root_id))
    return False
