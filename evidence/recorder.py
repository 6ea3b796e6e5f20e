"""The recorder: which raw events support each alert version, kept and appended to the log.

It sits beside the engine, not inside a detector: it is fed every decoded input with its raw
bytes (:meth:`EvidenceRecorder.observe`) and every alert version (:meth:`record`). A plain
object with no Faust import, so ``replay``, ``demo`` and the Kafka worker can all feed
it. Why beside: detectors keep ids and counters, not bytes; holding raw bytes in their state
would multiply changelog traffic for the rare event an alert cites.

**Bounded, fairly between platforms.** Raw events wait in a rolling index for ``retention_s``
of their platform's own event time (the latest ``ts`` of its events: another platform's clock
ages nothing of it), looked up by the ids alerts cite: a post's versions, its engagement
observations and the reposts and comments under it, an account's posts, the reports about a
post, an account or a target. Orders, their actions and the activity after their deadline are
held apart (``series_cap`` events after each deadline) since deadlines can be days away. At most
``max_held_bytes`` raw bytes and ``max_orders`` orders are held in all (platform names are
strings anyone may send, so no bound is per platform); over either, the oldest of the platform
holding most goes first. So a platform flooding the recorder lets its own events go, and a
platform holding less than an even share keeps what it would keep alone. Only events an alert
cites reach the log, and each at most once per alert.

**Per alert version** at most ``max_entries_per_version`` events: those always kept (the post,
the crossing event, the order and its actions, the posts the alert names) and then an evenly
spaced sample, first and last included, of the series (counter observations, reposts, members'
other posts, reports, activity after a deadline). A cited event no longer held is logged as
``"retained": false`` with the id it was cited by, so a bundle says what it lacks.

Everything is in event time: the same stream gives the same entries, in the same order.

**On Kafka** (``STORMWATCH_EVIDENCE__WORKER=true``; ``streams/kafka/evidence.py``): (1) ``ingest``
sends each valid event's bytes as received to an ``evidence`` stage keyed by platform, the log's
single writer per platform, and every input tick to all its partitions; (2) each stage sends its
alert versions (re-keyed by the alert's platform) and, after each message, each platform's event
time there, so the stage's :class:`evidence.stream.Sequencer` hands events and alerts to one
recorder per partition in ``(ts, rank, id)`` order once every source is ``order_margin_s`` past
them in their platform's time: a cited
event is held before it is cited, whatever the interleaving; ``replay --evidence-dir`` uses the
same sequencer, so both write the same entries; (3) raw events received wait in the changelogged
table ``evidence-held`` until this recorder lets them go (``retention_s``, ``max_held_bytes``,
``max_orders``: :attr:`EvidenceRecorder.on_evict`), alert versions not logged yet too; (4)
entries and signed tree heads (key ``STORMWATCH_EVIDENCE_SIGNING_KEY``) go to the ``evidence-log``
topic keyed by platform, one tree per platform (``log_for``), whose size, right edge and latest
head are in the changelogged table ``evidence-trees`` with each alert's logged entries and the
sources' times: a restarted worker rebuilds the recorder from the tables and appends where it
stopped; (5) ``evidence export --from-kafka`` and the worker's API read that topic back
(:func:`evidence.stream.read_records`). Replay and the demo keep one tree per platform too
(:class:`evidence.log.PlatformLogs`), so the same stream gives the same bundles in every mode.
Regulator-only alerts (platform ``*``, a finding across platforms) cite several platforms'
events, which no single writer holds: they are not logged in any mode; each platform's own
alert of the same finding is.
"""

from __future__ import annotations

import base64
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from evidence.log import PlatformLogs, sha256_hex
from events import Alert, AnyEvent, Engagement, Order, PlatformAction, Post, Report
from events.models import format_ts

ORDER_KINDS = {"order_overdue", "order_refused", "continued_dissemination", "duty_refusal", "evidence_not_preserved"}


class EvidenceSettings(BaseModel):
    """How much raw input the recorder holds and how much each alert version may cite."""

    dir: Path | None = Field(None, description="demo: where the evidence log goes (default: a new temporary folder).")
    retention_s: float = Field(86400.0, gt=0, description="Raw events wait this long (event time) to be cited.")
    max_held_bytes: int = Field(128 * 2**20, gt=0, description="At most this many raw bytes wait to be cited "
                                "(resident memory: about 2-3 times that, with the index); over it, the oldest of "
                                "the platform holding most goes first. The same figure bounds the raw bytes "
                                "waiting for their turn in the log's sequencer (evidence.stream).")
    max_entries_per_version: int = Field(300, ge=10, description="Events logged per alert version, at most.")
    series_cap: int = Field(2000, ge=1, description="Observations kept per post, account, target or order deadline.")
    max_orders: int = Field(10_000, ge=1, description="Orders whose order, actions and late activity are held; "
                            "over it, the oldest of the platform holding most goes first.")
    order_margin_s: float = Field(300.0, ge=0, description="Raw events and alert versions are logged in event-time "
                                  "order once every source is this far past them (replay and worker alike), so the "
                                  "worker's log equals replay's; an alert raised later than that behind the stream "
                                  "is logged on arrival.")
    worker: bool = Field(False, description="Worker: keep the evidence log on Kafka (an evidence stage, the "
                         "evidence-log topic, changelogged tables). Off by default: it costs throughput.")


class Held:
    """One raw input event as received, with where the index refers to it."""

    __slots__ = ("raw", "type", "event_id", "platform", "ts", "refs")

    def __init__(self, raw: bytes, event: AnyEvent, ts: float, refs: tuple) -> None:
        self.raw, self.type, self.event_id = raw, event.type, event.event_id
        self.platform, self.ts, self.refs = event.platform, ts, refs

    @property
    def key(self) -> tuple[str, str]:
        return self.platform, self.event_id

    @property
    def order(self) -> tuple[float, str]:
        return self.ts, self.event_id  # the ordered stages' order: (ts, event_id)


class EvidenceRecorder:
    """Feeds the evidence logs (a tree per platform) with the events each alert version cites."""

    def __init__(self, logs: Any, settings: EvidenceSettings | None = None) -> None:
        """``logs.log_for(platform)``: the platform's tree (:class:`evidence.log.PlatformLogs`, or
        the Kafka worker's per-partition trees), anything with ``append``, ``sign_tree_head`` and
        ``log_time``."""
        self.logs = logs
        self.on_evict: Callable[[tuple[str, str]], None] | None = None  # a held event is let go (Kafka: its table row)
        self.s = settings or EvidenceSettings()
        # Held raw events by (platform, event_id), and per platform their keys in arrival order
        # (oldest first), bytes and event time. Plain dicts, lists and deques: the index costs a
        # few hundred bytes per event beyond its bytes.
        self.held: dict[tuple[str, str], Held] = {}
        self.arrival: dict[str, deque[tuple[str, str]]] = {}
        self.platform_bytes: dict[str, int] = {}
        self.clock: dict[str, float] = {}
        self.held_bytes = 0  # all platforms
        self.refs: dict[tuple, list] = {}  # (what, platform, id) -> held keys, oldest first
        self.orders: dict[str, OrderedDict[str, dict]] = {}  # platform -> order id -> its held events, oldest first
        self.order_count = 0
        self.watch: dict[tuple[str, str], list[str]] = {}  # (platform, item) -> order ids watching it
        self.logged: dict[str, dict[tuple, int]] = {}  # alert id -> event key -> entry index

    # -- input --------------------------------------------------------------------------------

    def observe(self, raw: bytes, event: AnyEvent) -> None:
        """One decoded input event and its bytes as received (duplicates keep the first copy)."""
        t = event.epoch
        if event.type == "tick":  # time for every platform
            for p, at in list(self.clock.items()):
                if t > at:
                    self.clock[p] = t
                    self._evict(p)
            return
        p = event.platform
        if isinstance(event, (Order, PlatformAction)):
            self._order_event(raw, event)
            return
        key = (p, event.event_id)
        if key in self.held:
            return
        # The platform's clock: the latest ts of the events it holds, so a restarted worker
        # rebuilding them from its table gets the same clock back.
        if t > self.clock.get(p, -math.inf):
            self.clock[p] = t
        refs: tuple
        if isinstance(event, Post):
            refs = (("post", p, event.post_id), ("acct", p, event.account_id))
            if event.root_id:
                refs += (("spread", p, event.root_id),)
            if event.parent_id and event.parent_id != event.root_id:
                refs += (("spread", p, event.parent_id),)
            if self.watch:
                self._after_deadline(raw, event, t, (f"post:{event.post_id}", f"account:{event.account_id}",
                                                     *(f"post:{x}" for x in (event.parent_id, event.root_id) if x),
                                                     *(f"hashtag:{h.strip('#')}" for h in event.hashtags)))
        elif isinstance(event, Engagement):
            refs = (("eng", p, event.post_id),)
            if self.watch:
                self._after_deadline(raw, event, t, (f"post:{event.post_id}",))
        elif isinstance(event, Report):
            refs = tuple([("report", p, "post", event.post_id)] if event.post_id else []) \
                + tuple([("report", p, "account", event.account_id)] if event.account_id else []) \
                + tuple(("report", p, "target", tg.id) for tg in event.targets)
        else:
            refs = ()
        self.held[key] = Held(raw, event, t, refs)
        arrival = self.arrival.get(p)
        if arrival is None:
            arrival = self.arrival[p] = deque()
        arrival.append(key)
        self.held_bytes += len(raw)
        self.platform_bytes[p] = self.platform_bytes.get(p, 0) + len(raw)
        cap = self.s.series_cap
        for ref in refs:
            series = self.refs.get(ref)
            if series is None:
                self.refs[ref] = [key]
            else:
                series.append(key)
                if len(series) > (4 if ref[0] == "post" else cap):
                    del series[0]
        self._evict(p)

    def _evict(self, platform: str) -> None:
        """Drop the platform's held events past its retention (its own event time), then, while
        all platforms together hold over the byte bound, the oldest of whichever holds most."""
        arrival = self.arrival.get(platform)
        horizon = self.clock[platform] - self.s.retention_s
        while arrival and self.held[arrival[0]].ts < horizon:
            self._drop_oldest(platform)
        while self.held_bytes > self.s.max_held_bytes:
            self._drop_oldest(max(self.platform_bytes, key=lambda q: (self.platform_bytes[q], q)))

    def _drop_oldest(self, platform: str) -> None:
        arrival = self.arrival[platform]
        key = arrival.popleft()
        oldest = self.held.pop(key)
        if self.on_evict is not None:
            self.on_evict(key)
        self.held_bytes -= len(oldest.raw)
        self.platform_bytes[platform] -= len(oldest.raw)
        if not arrival:  # a platform holding nothing leaves no trace: names are anyone's strings
            del self.arrival[platform], self.platform_bytes[platform], self.clock[platform]
        for ref in oldest.refs:
            series = self.refs.get(ref)
            if series and series[0] == key:
                del series[0]
            if series is not None and not series:
                del self.refs[ref]

    def _order_event(self, raw: bytes, event: Order | PlatformAction) -> None:
        if event.order_id is None:
            return
        p = event.platform
        orders = self.orders.get(p)
        if orders is None:
            orders = self.orders[p] = OrderedDict()
        rec = orders.get(event.order_id)
        if rec is None:
            rec = orders[event.order_id] = {"deadline": None, "order": [], "actions": [], "after": []}
            self.order_count += 1
            if self.order_count > self.s.max_orders:  # the oldest of the platform holding most (not this one)
                q = max((q for q in self.orders if q != p or len(self.orders[q]) > 1),
                        key=lambda q: (len(self.orders[q]), q))
                self._drop_order(q)
        self._order_held(raw, event, rec)

    def _drop_order(self, p: str) -> None:
        old, dropped = self.orders[p].popitem(last=False)
        self.order_count -= 1
        if not self.orders[p]:
            del self.orders[p]
        for item in dropped.get("items", []):  # only the dropped order stops watching it
            watching = [o for o in self.watch.get((p, item), ()) if o != old]
            if watching:
                self.watch[(p, item)] = watching
            else:
                self.watch.pop((p, item), None)
        if self.on_evict is not None:
            for gone in dropped["order"] + dropped["actions"]:
                self.on_evict(gone.key)

    def _order_held(self, raw: bytes, event: Order | PlatformAction, rec: dict) -> None:
        if any(h.event_id == event.event_id for h in rec["order"] + rec["actions"]):
            return  # a duplicate delivery
        held = Held(raw, event, event.epoch, ())
        if isinstance(event, Order):
            rec["order"].append(held)
            rec["deadline"] = event.deadline_epoch
            rec["items"] = [item.key for item in event.items]
            for item in rec["items"]:
                self.watch.setdefault((event.platform, item), []).append(event.order_id)
        else:
            rec["actions"].append(held)

    def _after_deadline(self, raw: bytes, event: Post | Engagement, t: float, items: tuple[str, ...]) -> None:
        """Activity on an ordered item after the order's deadline: the first ``series_cap`` per order."""
        for item in items:
            for order_id in self.watch.get((event.platform, item), ()):
                rec = self.orders.get(event.platform, {}).get(order_id)
                if rec is None or rec["deadline"] is None or t <= rec["deadline"]:
                    continue
                after = rec["after"]
                if len(after) < self.s.series_cap and not (after and after[-1].event_id == event.event_id):
                    after.append(Held(raw, event, t, ()))

    # -- alerts -------------------------------------------------------------------------------

    def record(self, alert: Alert) -> None:
        """Log the events this alert version cites, then the version itself, then sign the tree."""
        if getattr(alert, "shadow", False) or alert.platform == "*":
            return  # shadow alerts are tried, not acted on; a regulator-only one has no single writer
        t = datetime.fromisoformat(alert.ts).timestamp()
        must, series = self._cites(alert, t)
        budget = max(self.s.max_entries_per_version - len(must), 0)
        cited = must[:self.s.max_entries_per_version] + _spread_sample(series, budget)
        log = self.logs.log_for(alert.platform)
        logged = self.logged.setdefault(alert.alert_id, {})
        supports: list[int] = []
        for role, held, cited_as in cited:
            key = held.key if held is not None else ("missing", cited_as)
            if key not in logged:
                logged[key] = log.append(self._entry(alert, role, held, cited_as))
            if logged[key] not in supports:
                supports.append(logged[key])
        body = alert.to_json()
        log.append({"alert_id": alert.alert_id, "version": alert.version, "platform": alert.platform,
                         "role": "alert version", "type": "alert", "event_id": None, "ts": alert.ts,
                         "sha256": sha256_hex(body), "raw": base64.b64encode(body).decode(),
                         "supports": sorted(supports)})
        log.log_time = max(log.log_time, t)  # per tree: a tree head's time is its own latest alert's
        log.sign_tree_head(log.log_time)

    @staticmethod
    def _entry(alert: Alert, role: str, held: Held | None, cited_as: str) -> dict[str, Any]:
        entry = {"alert_id": alert.alert_id, "version": alert.version, "platform": alert.platform, "role": role}
        if held is None:
            return {**entry, "type": None, "event_id": None, "ts": None, "sha256": None, "raw": None,
                    "cited_as": cited_as, "retained": False}
        return {**entry, "type": held.type, "event_id": held.event_id, "ts": format_ts(held.ts),
                "sha256": sha256_hex(held.raw), "raw": base64.b64encode(held.raw).decode()}

    # -- what each kind cites -------------------------------------------------------------------

    def _cites(self, alert: Alert, t: float) -> tuple[list, list]:
        """(always kept, sampled series): lists of (role, Held or None, cited as)."""
        ev, kind = alert.evidence, alert.kind
        platforms = ev.get("platforms") or [alert.platform] if alert.platform == "*" else [alert.platform]
        must: list = []
        series: list = []
        if kind in ORDER_KINDS and (ev.get("order_id") or ev.get("orders")):
            order_ids = [ev["order_id"]] if alert.subject.type == "order" else list(ev.get("orders", []))
            for order_id in order_ids:
                self._order_cites(alert.platform, order_id, t, must, series)
        elif kind in ("legal_threshold", "viral_spread") and alert.subject.type == "post":
            crossing = "crossing event" if kind == "legal_threshold" else "triggering event"
            self._post_cites(alert.platform, ev.get("post_id") or alert.subject.id, t, must, series, crossing)
        else:
            # Posts the alert names (campaign members, attacking or pushed posts, cumulative items).
            role = {"water_army_campaign": "campaign member post", "violence_surge": "attacking post",
                    "illegal_marketing": "pushed post"}.get(kind, "cited post")
            posts = list(ev.get("posts") or []) + ([ev["post_id"]] if ev.get("post_id") else [])
            for post_id in dict.fromkeys(posts):
                found = [h for p in platforms for h in self._held(("post", p, post_id), t)]
                must += [(role, h, f"post:{post_id}") for h in found[-1:]] or [(role, None, f"post:{post_id}")]
                if kind in ("legal_threshold", "illegal_marketing"):  # figures summed over these posts
                    series += [("engagement observation", h, "") for p in platforms
                               for h in self._held(("eng", p, post_id), t)]
            if kind == "water_army_campaign":  # members' other posts: up to three each, the latest
                for account in ev.get("accounts", []):
                    series += [(role, h, "") for h in self._held(("acct", alert.platform, account), t)[-3:]]
            for subject in (("target", ev.get("target_id")), ("account", ev.get("account_id"))):
                if subject[1]:
                    series += [("report", h, "") for p in platforms
                               for h in self._held(("report", p, subject[0], subject[1]), t)]
        must = _unique(must)
        keys = {h.key for _r, h, _c in must if h is not None}
        series = sorted(_unique([c for c in series if c[1].key not in keys]), key=lambda c: c[1].order)
        return must, series

    def _post_cites(self, p: str, post_id: str, t: float, must: list, series: list, crossing_role: str) -> None:
        """A post, its counter history up to and including the event at ``t``, reports about it."""
        versions = self._held(("post", p, post_id), t)
        history = [("engagement observation", h, "") for h in self._held(("eng", p, post_id), t)]
        history += [("repost" if _kind(h) == "repost" else "reply or comment", h, "")
                    for h in self._held(("spread", p, post_id), t)]
        candidates = [("post", h, "") for h in versions] + history
        crossing = max(candidates, key=lambda c: c[1].order, default=None)
        must += [("post", h, f"post:{post_id}") for h in versions if crossing is None or h is not crossing[1]]
        if not versions:
            must.append(("post", None, f"post:{post_id}"))
        if crossing is not None:
            must.append((crossing_role, crossing[1], ""))
        series += [c for c in history if crossing is None or c[1] is not crossing[1]]
        series += [("report", h, "") for h in self._held(("report", p, "post", post_id), t)]

    def _order_cites(self, p: str, order_id: str, t: float, must: list, series: list) -> None:
        rec = self.orders.get(p, {}).get(order_id)
        if rec is None or not rec["order"]:
            must.append(("order", None, f"order:{order_id}"))
            return
        must += [("order", h, "") for h in rec["order"]]
        must += [("action", h, "") for h in rec["actions"] if h.ts <= t]
        series += [(f"{h.type} after deadline", h, "") for h in rec["after"] if h.ts <= t]

    def _held(self, ref: tuple, t: float) -> list[Held]:
        """Held events under ``ref`` with event time <= ``t``, in (ts, event_id) order."""
        found = [self.held[k] for k in self.refs.get(ref, ()) if k in self.held]
        return sorted((h for h in found if h.ts <= t), key=lambda h: h.order)


def _kind(held: Held) -> str | None:
    """A held post's ``kind`` (repost, comment, ...), read from its bytes when it is cited."""
    try:
        return orjson.loads(held.raw).get("kind")
    except orjson.JSONDecodeError:
        return None


def _unique(cites: list) -> list:
    seen: set = set()
    out = []
    for cite in cites:
        key = cite[1].key if cite[1] is not None else ("missing", cite[2])
        if key not in seen:
            seen.add(key)
            out.append(cite)
    return out


def _spread_sample(items: list, budget: int) -> list:
    """At most ``budget`` items, evenly spaced, the first and the last always among them."""
    if len(items) <= budget:
        return items
    if budget <= 0:
        return []
    if budget == 1:
        return items[-1:]
    n = len(items) - 1
    return [items[round(i * n / (budget - 1))] for i in range(budget)]


def new_recorder(directory: Path | None, signing_key_b64: str | None,
                 settings: EvidenceSettings | None = None) -> tuple[EvidenceRecorder, bool]:
    """A recorder writing a new log to ``directory`` (None: in memory only), and whether its key
    was generated. Without a configured key a fresh one signs this log alone: its public key is
    written beside the log and should be handed over apart from any bundle (keep a configured
    key, ``STORMWATCH_EVIDENCE_SIGNING_KEY``, for logs that must be checked against a known key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from evidence.log import signing_key

    key = signing_key(signing_key_b64) if signing_key_b64 else Ed25519PrivateKey.generate()
    return EvidenceRecorder(PlatformLogs(directory, key), settings), not signing_key_b64
