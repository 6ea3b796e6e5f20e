"""Cascades: spread of each post, the legal figures crossed at the exact event, and forecasts.

An **item** is a post whose spread is counted: every original (the root of its cascade) and
any post labelled ``defamation``. Its figures are the larger of what the platform's cumulative
engagement counters say and what Stormwatch counted from post events (reposts anywhere in a
root's cascade; direct reposts of any other item). An item is defamatory when any version of
its post event carries the platform label ``defamation``; defamation reports about it are
counted as evidence but, until a label upholds them, do not make it defamatory.

Alerts:

* ``legal_threshold``: at the event (post, engagement, or the label) whose figure first
  reaches ``defamation_views_5000`` or ``defamation_reposts_500`` on a defamatory item, once
  per item and figure; and ``defamation_cumulative_1y`` when one author's defamatory items of
  the last year together reach either figure (``defamation_repeat_3`` items or more), once per
  author; items a ``case`` about the author dealt with are not counted (未经处理). A defamatory item
  within two years after a defamation penalty is ``defamation_after_penalty_2y`` (2013-21 Art. 2(3)).
* ``viral_spread``: a cascade whose root carries a harmful label, or was reported, grows
  abnormally fast (``viral_reposts``/``viral_window_s``), or is forecast by SEISMIC to reach
  a legal figure within ``forecast_horizon_s`` while still below it. Lawful posts stay silent
  however viral.
* ``illegal_marketing``: a public account pushing harmful posts about persons, counted per
  account against the 2019-15 Art. 10(4) figures (its followers, the accounts its posts
  reached, its posts); see :meth:`Cascades._marketing` for what is not summed.

Two detectors, so that one busy platform spreads over partitions (issue 15):

* :class:`CascadeWatch` counts each item's spread and decides *when* an item alert is due,
  ordered. For the platforms listed in ``root_ids_given`` it is keyed by platform and item (a
  post goes to its root, to the post it reposts, and to itself when it is an item); for the
  others by platform alone, because their posts may leave ``root_id`` out and need the parent
  chain. It runs on the stage whose key it shares: ``posts`` when any platform is listed, else
  the water army's ``platform``. It raises nothing: it hands a :class:`events.CascadeFinding`
  (the item's figures and its alerts, drafted and versioned, without the author's part) to...
* :class:`Cascades`, keyed by platform and author, which sees only those findings and the
  ``case`` events about accounts: it adds the roles that need the author's record (cases, the
  targets earlier alerts named the author for), raises every cascades alert, and counts the
  author's cumulative and public-account figures.
"""

from __future__ import annotations

import bisect
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from compliance import cases
from compliance.law import LawSettings
from detectors import roles, seismic
from events import (
    Alert, AnyEvent, Case, CascadeFinding, Context, Engagement, Post, Report, format_ts, keys as ids, raise_alert,
)
from events.models import HARMFUL_LABELS

HARMFUL = HARMFUL_LABELS
MAX_TARGETS = 100  # targets an item remembers (a post names at most 100; its versions could name more)
DEFAMATION_REFS = ["Criminal Law Art. 246", "Interpretation 2013-21 Art. 2(1)"]


class CascadeSettings(BaseModel):
    """Spread tracking; the legal figures themselves are in ``compliance.law``."""

    shadow: bool = Field(False, description="Mark alerts as shadow (not delivered).")
    item_ttl_s: float = Field(7 * 86400, description="An item with no activity for this long is forgotten.")
    viral_window_s: float = Field(600, description="Window of the abnormal-growth rule.")
    viral_reposts: int = Field(100, description="Reposts within the window that make growth abnormal.")
    forecast_horizon_s: float = Field(6 * 3600, description="Warn when a figure is forecast within this horizon.")
    forecast_every: int = Field(10, description="Re-forecast every this many reposts.")
    forecast_max_reposts: int = Field(2000, description="Reshares kept per cascade for the forecast.")
    default_followers: int = Field(100, description="Followers assumed when a post carries no account data.")
    n_star: float = Field(seismic.N_STAR, description="SEISMIC's mean out-degree of resharers.")
    max_accounts: int = Field(10_000, description="Distinct reposting accounts an item remembers (its evidence and "
                              "the posting-accounts figure): bounds one item's record; reposts still count past it.")
    root_ids_given: list[str] = Field(default_factory=list, description=(
        "Platforms that send root_id on every post with a parent: their cascades are keyed by root and "
        "spread over partitions, and such a post without root_id is dead-lettered. Other platforms keep "
        "one partition and the parent chain."))


class CascadeWatch:
    """Each item's spread and the moments its alerts are due; see the module docstring."""

    name: ClassVar[str] = "cascade_watch"
    raises: ClassVar[tuple[str, ...]] = ()
    event_types: ClassVar[frozenset[str]] = frozenset({"post", "engagement", "report"})
    ordered: ClassVar[bool] = True
    emits: ClassVar[frozenset[str]] = frozenset({"cascades"})

    def __init__(self, settings: CascadeSettings | None = None, law: LawSettings | None = None) -> None:
        self.s = settings or CascadeSettings()
        self.law = law or LawSettings()
        self.by_root = frozenset(self.s.root_ids_given)
        # The stage whose key it shares most. Keyed by platform: the water army's, one entry per
        # post serves both. Keyed by root: the posts stage's (platform + post, OrderWatch's), which
        # an original and engagement share and a repost adds one entry to.
        self.stage = "posts" if self.by_root else "platform"

    def refuse(self, event: AnyEvent) -> str | None:
        """Why an event cannot be routed (a dead letter), or None."""
        if (isinstance(event, Post) and event.platform in self.by_root and event.parent_id is not None
                and event.root_id is None):
            return (f"post.root_id: required for a post with a parent on platform {event.platform!r}, which "
                    "STORMWATCH_CASCADES__ROOT_IDS_GIVEN lists (its cascades are keyed by their root)")
        return None

    def keys(self, event: AnyEvent) -> list[str]:
        p = event.platform
        if isinstance(event, Report) and (event.post_id is None or event.category != "defamation"):
            return []
        if p not in self.by_root:
            return [ids.key(p)]
        if not isinstance(event, Post):
            return [ids.key(p, event.post_id)]
        if event.parent_id is not None and event.root_id is None:
            return []  # refused where it entered (refuse)
        root = event.root_id or event.post_id
        items = [root]
        if event.kind == "repost" and event.parent_id is not None:
            items.append(event.parent_id)
        if event.kind == "original" or "defamation" in event.labels:
            items.append(event.post_id)
        return [ids.key(p, item) for item in dict.fromkeys(items)]

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        p = event.platform
        keyed = ids.parts(key)
        only = keyed[1] if len(keyed) > 1 else None  # the one item this key holds (keyed by root)
        if isinstance(event, Post):
            self._post(p, event, only, ctx)
        elif isinstance(event, Engagement):
            item = self._item(p, event.post_id, event.epoch, ctx)
            grew = False
            for field in ("views", "reposts", "comments", "reach_accounts"):
                value = getattr(event, field)
                if value > item["eng"].get(field, 0):  # cumulative counters: a lower value is stale
                    item["eng"][field], grew = value, True
            if grew:
                self._check(p, event, 0, event.post_id, item, event.epoch, ctx)
            self._save(p, event.post_id, item, event.epoch, ctx)
        elif isinstance(event, Report):
            item = self._item(p, event.post_id, event.epoch, ctx)
            if event.reporter_id not in item["reporters"]:
                item["reporters"].append(event.reporter_id)
            self._save(p, event.post_id, item, event.epoch, ctx)
        return []

    # -- posts --------------------------------------------------------------------------------

    def _post(self, p: str, post: Post, only: str | None, ctx: Context) -> None:
        t, s = post.epoch, self.s
        if only is not None:
            root = post.root_id or post.post_id
        else:
            root = post.root_id or (self._root_of(p, post.parent_id, ctx) if post.parent_id else post.post_id)
            if root != post.post_id:
                ctx.records.save("root", p, post.post_id, record={"root": root}, until=t + s.item_ttl_s)
            elif ctx.records.has("root", p, post.post_id):  # a later version of it is its own root
                ctx.records.delete("root", p, post.post_id)
        touched: dict[str, dict] = {}
        if ((post.kind == "original" or post.post_id == root or "defamation" in post.labels)
                and only in (None, post.post_id)):
            item = touched[post.post_id] = self._item(p, post.post_id, t, ctx)
            item["author"] = post.account_id
            item["labels"] = sorted(set(item["labels"]) | set(post.labels))
            item["targets"] = sorted(set(item["targets"]) | {tg.id for tg in post.targets})[:MAX_TARGETS]
            if post.account is not None:
                item["followers"] = post.account.followers
                item["public"] = post.account.public_account
            found = [name for name, present in (
                ("minor_target", any(tg.minor for tg in post.targets)),
                ("disabled_target", any(tg.disabled for tg in post.targets)),
                ("deep_synthesis", post.synthetic),
                ("provider_organized", bool(post.account and post.account.platform_operated))) if present]
            if found:  # the Opinions' circumstances the item itself shows (its author initiated it)
                item["agg"] = sorted(set(item.get("agg", [])) | set(found))
            item.setdefault("spread", [[t, item.get("followers", s.default_followers)]])
        if post.kind == "repost":
            for item_id in dict.fromkeys([root, post.parent_id]):
                if (item_id is None or only not in (None, item_id)
                        or (item_id != root and not self._exists(p, item_id, ctx))):
                    continue
                item = touched.get(item_id) or self._item(p, item_id, t, ctx)
                touched[item_id] = item
                item["reposts"] += 1
                reposters = item["accounts"]  # reposts per account (a dict: membership in O(1))
                if post.account_id in reposters:
                    reposters[post.account_id] += 1
                elif len(reposters) < s.max_accounts:
                    reposters[post.account_id] = 1
                roles.note_reposter(item, post.account_id, post.account.followers if post.account else None)
                recent = item["recent"]  # repost times in order; drop what left the window
                recent.append(t)
                del recent[:bisect.bisect_right(recent, t - s.viral_window_s)]
                spread = item.setdefault("spread", [[item["t0"], item.get("followers", s.default_followers)]])
                if len(spread) < s.forecast_max_reposts:
                    spread.append([t, post.account.followers if post.account else s.default_followers])
        elif (post.kind in ("comment", "reply") and root != post.post_id and only in (None, root)
              and self._exists(p, root, ctx)):
            item = touched.get(root) or self._item(p, root, t, ctx)
            touched[root] = item
            item["comments"] += 1
        for item_id, item in touched.items():  # in the order: the post itself, its root, its parent
            rank = 0 if item_id == post.post_id else 1 if item_id == root else 2
            self._check(p, post, rank, item_id, item, t, ctx)
            self._save(p, item_id, item, t, ctx)

    def _root_of(self, p: str, parent: str, ctx: Context) -> str:
        """A post's root is recorded only when it is not the post itself (most posts are
        originals: no record for them), so no record means the parent is the root, as it does
        for a parent never seen."""
        rec = ctx.records.get("root", p, parent)
        return rec["root"] if rec is not None else parent

    def _exists(self, p: str, item_id: str, ctx: Context) -> bool:
        return ctx.records.has("item", p, item_id)

    def _item(self, p: str, item_id: str, t: float, ctx: Context) -> dict[str, Any]:
        rec = ctx.records.get("item", p, item_id)
        if rec is None:  # saved by _save, which every caller calls
            rec = {"t0": t, "author": None, "labels": [], "targets": [], "reposts": 0, "comments": 0,
                   "accounts": {}, "recent": [], "eng": {}, "reporters": [], "fired": [], "alerts": {}}
        return rec

    def _save(self, p: str, item_id: str, item: dict, t: float, ctx: Context) -> None:
        ctx.records.save("item", p, item_id, record=item, until=t + self.s.item_ttl_s)

    # -- when an item's alerts are due ---------------------------------------------------------

    @staticmethod
    def figures(item: dict) -> dict[str, int]:
        eng = item["eng"]
        return {"views": eng.get("views", 0), "reposts": max(eng.get("reposts", 0), item["reposts"]),
                "comments": max(eng.get("comments", 0), item["comments"]),
                "reach_accounts": max(eng.get("reach_accounts", 0), len(item["accounts"]))}

    def _check(self, p: str, event: AnyEvent, rank: int, item_id: str, item: dict, t: float, ctx: Context) -> None:
        """Hand ``Cascades`` what it needs about the item at this event, if anything: the item
        alerts due now (versioned here, in the item's own book, whoever its author is), its
        figures for the author's cumulative count, its reach for public-account marketing.
        ``rank``: the item's part in the event (0 the post itself, 1 its root, 2 its parent),
        which orders the findings of one event as one detector once handled their items."""
        fig = self.figures(item)
        defamatory = "defamation" in item["labels"]
        threshold: list[dict] = []
        if defamatory:
            for fid, value in (("defamation_views_5000", fig["views"]), ("defamation_reposts_500", fig["reposts"])):
                limit = self.law.limit(fid)
                if value >= limit and fid not in item["fired"]:
                    item["fired"].append(fid)
                    item.setdefault("named_at", t)  # its author is named: a later item about its targets repeats
                    threshold.append(raise_alert(
                        item["alerts"], kind="legal_threshold", subject=("post", item_id), window=fid, ts=t,
                        severity="critical", platform=p,
                        summary=f"Defamatory post {item_id} reached {value:,} {fid.split('_')[1]} "
                        f"(figure {limit:,}, {self.law.source(fid)}): candidate serious circumstances.",
                        legal_refs=DEFAMATION_REFS, aggravating=_aggravating(item),
                        evidence={"threshold": fid, "value": value, "limit": limit, "post_id": item_id,
                                  "account_id": item["author"], **fig,
                                  "defamation_reports": len(item["reporters"])},
                        shadow=self.s.shadow).model_dump())
        viral = self._viral(p, item_id, item, fig, t) if (
            defamatory or item["reporters"] or HARMFUL & set(item["labels"])) else []
        snapshot: dict[str, Any] = {}
        if threshold or viral:
            snapshot.update(threshold=threshold, viral=viral, roles=roles.cascade_item(item_id, item))
        if defamatory and item["author"] is not None:
            snapshot["cumulative"] = [fig["views"], fig["reposts"], item.get("named_at")]
        if item.get("public") and HARMFUL & set(item["labels"]) and item["targets"]:
            snapshot["marketing"] = [fig["reach_accounts"], item["targets"][:20], item.get("followers", 0),
                                     _aggravating(item)]
        if snapshot:
            snapshot.update(id=item_id, t0=item["t0"], targets=item["targets"])  # at most MAX_TARGETS
            ctx.emit("cascades", CascadeFinding(
                type="cascade_finding", event_id=finding_id(event.event_id, rank, item_id), platform=p, ts=event.ts,
                author=item["author"], item=snapshot))

    def _viral(self, platform: str, item_id: str, item: dict, fig: dict, t: float) -> list[dict]:
        s = self.s
        reasons = []
        if len(item["recent"]) >= s.viral_reposts and "growth" not in item["fired"]:
            item["fired"].append("growth")
            reasons.append(f"{len(item['recent'])} reposts in {s.viral_window_s / 60:g} minutes")
        forecast = None
        spread = item.get("spread", [])
        if ("defamation" in item["labels"] and "forecast" not in item["fired"] and len(spread) >= 5
                and item["reposts"] % s.forecast_every == 0 and len(spread) < s.forecast_max_reposts):
            forecast = self.forecast(spread, t, fig)
            limits = (self.law.limit("defamation_reposts_500"), self.law.limit("defamation_views_5000"))
            inf = float("inf")
            reposts_ahead = inf if forecast["supercritical"] else forecast["reposts"]
            views_ahead = inf if forecast["supercritical"] and fig["views"] else (forecast["views"] or 0)
            if fig["reposts"] < limits[0] <= reposts_ahead or fig["views"] < limits[1] <= views_ahead:
                item["fired"].append("forecast")
                reasons.append("forecast to grow without bound (supercritical)" if forecast["supercritical"]
                               else f"forecast {forecast['reposts']:,} reposts / {forecast['views'] or 0:,} views")
        if not reasons:
            return []
        if forecast is None and len(spread) >= 5:
            forecast = self.forecast(spread, t, fig)
        return [raise_alert(
            item["alerts"], kind="viral_spread", subject=("post", item_id), ts=t,
            severity="critical" if "defamation" in item["labels"] else "warning", platform=platform,
            summary=f"Post {item_id} spreads fast: " + "; ".join(reasons) + ".",
            legal_refs=DEFAMATION_REFS if "defamation" in item["labels"] else [],
            aggravating=_aggravating(item),
            evidence={"post_id": item_id, "views": fig["views"], "reposts": fig["reposts"],
                      "reach_accounts": fig["reach_accounts"], "reposts_in_window": len(item["recent"]),
                      "forecast": forecast or {"horizon_s": s.forecast_horizon_s, "views": None, "reposts": None}},
            shadow=s.shadow).model_dump()]

    def forecast(self, spread: list, t: float, fig: dict) -> dict[str, Any]:
        """SEISMIC's final size, capped at what the horizon allows, in reposts and in views."""
        arr = np.asarray(spread, dtype=float)
        t0 = arr[0, 0]
        final = seismic.predict(arr[:, 0] - t0, arr[:, 1], t - t0, self.s.n_star)
        reposts = final - 1  # the original is not a repost
        views_per_repost = fig["views"] / max(fig["reposts"], 1)
        as_int = (lambda x: None if x == float("inf") else int(round(x)))
        return {"horizon_s": self.s.forecast_horizon_s, "reposts": as_int(max(reposts, fig["reposts"])),
                "views": as_int(max(reposts * views_per_repost, fig["views"])) if fig["views"] else None,
                "supercritical": final == float("inf")}


def finding_id(event_id: str, rank: int, item_id: str) -> str:
    """The id of the finding an event makes about an item: the event's id first, so it sorts
    where that event did (right after it: NUL sorts first, so only an id made of this one, a
    NUL and more can come between), then the item's part in the event, so the findings of one
    event keep the order one detector handled its items in; unambiguous whatever the ids hold
    (the item id's length, read from the end, tells where it starts), so the seen-set of
    ``Cascades`` never takes one finding for another's repeat."""
    return f"{event_id}\x00{rank}{item_id}\x00{len(item_id)}"


def _aggravating(item: dict) -> list[str]:
    """The Opinions' circumstances the item shows: its targets, its content, its author."""
    found = set(item.get("agg", [])) | ({"sexual_topic"} if "sexual_rumor" in item["labels"] else set())
    return sorted(found)


class Cascades:
    """Raises the cascades alerts, keyed by platform and author; see the module docstring.

    A finding's ``item`` holds: ``id``, ``t0``, ``targets``; ``threshold`` and ``viral`` (the
    item's alerts due at this event, drafted without ``evidence.roles``) with ``roles`` (the
    roles the item itself shows); ``cumulative`` (``[views, reposts, named_at]`` of a
    defamatory item); ``marketing`` (``[reach, targets, followers, aggravating]`` of a public
    account's harmful item about persons)."""

    name: ClassVar[str] = "cascades"
    raises: ClassVar[tuple[str, ...]] = ("legal_threshold", "viral_spread", "illegal_marketing")
    event_types: ClassVar[frozenset[str]] = frozenset({"case"})
    receives: ClassVar[frozenset[str]] = frozenset({"cascade_finding"})  # from CascadeWatch only
    ordered: ClassVar[bool] = True

    def __init__(self, settings: CascadeSettings | None = None, law: LawSettings | None = None) -> None:
        self.s = settings or CascadeSettings()
        self.law = law or LawSettings()

    def keys(self, event: AnyEvent) -> list[str]:
        if isinstance(event, CascadeFinding):
            return [ids.key(event.platform) if event.author is None else ids.key(event.platform, event.author)]
        if isinstance(event, Case) and event.subject.type == "account":
            return [ids.key(event.platform, event.subject.id)]
        return []

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        if isinstance(event, Case):
            return self._case(event.platform, event, ctx)
        if not isinstance(event, CascadeFinding):
            return []
        p, author, item, t = event.platform, event.author, event.item, event.epoch
        alerts = [self._with_roles(p, author, item, draft, ctx) for draft in item.get("threshold", ())]
        if "cumulative" in item:
            alerts.extend(self._cumulative(p, author, item, t, ctx))
        alerts.extend(self._with_roles(p, author, item, draft, ctx) for draft in item.get("viral", ()))
        if "marketing" in item:
            alerts.extend(self._marketing(p, author, item, t, ctx))
        return alerts

    def _with_roles(self, p: str, author: str | None, item: dict, draft: dict, ctx: Context) -> Alert:
        """An item alert as drafted, with ``evidence.roles`` (see :mod:`detectors.roles`)."""
        found = list(item["roles"])
        if author is not None:
            known = cases.cases_of(ctx.records, p, "account", author)
            named = (ctx.records.get("author", p, author) or {}).get("named", {})
            found += roles.cascade_author(author, item["t0"], item["targets"], known["cases"] if known else [], named)
        return Alert.model_validate({**draft, "evidence": {**draft["evidence"], "roles": found}})

    def _cumulative(self, p: str, author: str, item: dict, t: float, ctx: Context) -> list[Alert]:
        """2013-21 Art. 4: one author's defamatory items within a year, aggregated."""
        acct = ctx.records.get("author", p, author) or {"items": {}, "fired": [], "alerts": {}}
        window = self.law.limit("defamation_cumulative_1y") * 86400.0
        views, reposts, named_at = item["cumulative"]
        acct["items"][item["id"]] = [item["t0"], views, reposts]
        if named_at is not None:  # an alert named the author over this item: its targets, for repeats (roles)
            named = acct.setdefault("named", {})
            for target in item["targets"]:
                named.setdefault(target, named_at)
            while len(named) > roles.MAX_NAMED:
                del named[next(iter(named))]
        acct["items"] = {k: v for k, v in acct["items"].items() if v[0] >= t - window}
        record = cases.cases_of(ctx.records, p, "account", author)
        handled = cases.handled_until(record)  # 未经处理: conduct a case dealt with is not counted again
        unhandled = {k: v for k, v in acct["items"].items() if v[0] > handled}
        alerts = self._after_penalty(p, author, acct, record, t) if record else []
        if len(unhandled) >= self.law.limit("defamation_repeat_3") and "cumulative" not in acct["fired"]:
            views = sum(v[1] for v in unhandled.values())
            reposts = sum(v[2] for v in unhandled.values())
            for figure, value, limit in (("views", views, self.law.limit("defamation_views_5000")),
                                         ("reposts", reposts, self.law.limit("defamation_reposts_500"))):
                if value >= limit and "cumulative" not in acct["fired"]:
                    acct["fired"].append("cumulative")
                    account = author
                    alerts.append(raise_alert(
                        acct["alerts"], kind="legal_threshold", subject=("account", account),
                        window="defamation_cumulative_1y", ts=t, severity="critical", platform=p,
                        summary=f"Account {account}'s {len(unhandled)} defamatory posts of the past year reached "
                        f"{value:,} {figure} together (figure {limit:,}, Interpretation 2013-21 Art. 4): candidate serious "
                        "circumstances.",
                        legal_refs=["Criminal Law Art. 246", "Interpretation 2013-21 Art. 4"],
                        evidence={"threshold": "defamation_cumulative_1y", "value": value, "limit": limit,
                                  "figure": figure, "account_id": account, "views": views, "reposts": reposts,
                                  "posts": sorted(unhandled),
                                  "roles": roles.repeat_by_cases(account, record["cases"] if record else [],
                                                                 min(v[0] for v in unhandled.values())),
                                  **({"excluded_as_dealt_with": sorted(set(acct["items"]) - set(unhandled))}
                                     if len(unhandled) < len(acct["items"]) else {})},
                        shadow=self.s.shadow))
        ctx.records.save("author", p, author, record=acct, until=t + window)
        return alerts

    def _case(self, p: str, case: Case, ctx: Context) -> list[Alert]:
        """A sanction or case about an account: its conduct so far is dealt with (a later
        cumulative finding counts only what came after), and a defamation penalty makes the
        account's defamatory items of the next two years serious (2013-21 Art. 2(3))."""
        keep = (self.law.limit("defamation_after_penalty_2y") + 1) * 86400.0  # a day past the last one it counts
        record = cases.note_case(ctx.records, p, case, keep_s=keep)
        acct = ctx.records.get("author", p, case.subject.id)
        if record is None or acct is None:
            return []
        if any(v[0] <= case.decided_epoch for v in acct["items"].values()):  # it dealt with counted conduct:
            acct["fired"] = [f for f in acct["fired"] if f != "cumulative"]  # new conduct may be found again
        alerts = self._after_penalty(p, case.subject.id, acct, record, case.epoch)
        ctx.records.save("author", p, case.subject.id, record=acct, until=acct["until"])
        return alerts

    def _after_penalty(self, p: str, account: str, acct: dict, record: dict, t: float) -> list[Alert]:
        """2013-21 Art. 2(3): defamatory items posted within two years after an administrative
        penalty for defamation, each once (the penalty may arrive before or after the item)."""
        within = self.law.limit("defamation_after_penalty_2y") * 86400.0
        alerts = []
        for item_id, (t0, views, reposts) in sorted(acct["items"].items()):
            fid = f"after_penalty:{item_id}"
            penalty = cases.prior_penalty(record, "defamation", t0, within)
            if penalty is None or fid in acct["fired"]:
                continue
            acct["fired"].append(fid)
            days = round((t0 - penalty[0]) / 86400.0, 3)
            limit = self.law.limit("defamation_after_penalty_2y")
            alerts.append(raise_alert(
                acct["alerts"], kind="legal_threshold", subject=("post", item_id), window="defamation_after_penalty_2y",
                ts=t, severity="critical", platform=p,
                summary=f"Account {account} posted defamatory post {item_id} {days:g} days after an administrative "
                f"penalty for defamation (case {penalty[1]}; within {limit} days, Interpretation 2013-21 Art. 2(3)): "
                "candidate serious circumstances.",
                legal_refs=["Criminal Law Art. 246", "Interpretation 2013-21 Art. 2(3)"],
                evidence={"threshold": "defamation_after_penalty_2y", "value": days, "limit": limit,
                          "post_id": item_id, "account_id": account, "case_id": penalty[1], "case_action": penalty[2],
                          "penalty_decided_at": format_ts(penalty[0]), "views": views, "reposts": reposts,
                          "roles": roles.repeat_by_cases(account, record["cases"], t0)},
                shadow=self.s.shadow))
        return alerts

    def _marketing(self, p: str, author: str, item: dict, t: float, ctx: Context) -> list[Alert]:
        """One public account pushing harmful posts about persons, against 2019-15 Art. 10(4).

        Measured per offender, the account: "情节严重" is one offender's, so unrelated accounts
        posting about one person are not summed. An organised group acting together could be
        summed, but the campaigns that show organisation live in the water-army detector's own
        state; the group's figures are left to the reviewer of that ``water_army_campaign``.
        Accounts reached: events do not name readers, so one reader of two posts cannot be told
        from two readers; the figure is the largest count of one post (a lower bound that counts
        no reader twice), and the sum over posts is given as the upper bound.
        """
        reach, targets, followers, aggravating = item["marketing"]
        rec = ctx.records.get("pusher", p, author) or {"posts": {}, "followers": 0, "fired": [], "alerts": {}}
        rec["followers"] = max(rec["followers"], followers)
        rec["posts"][item["id"]] = [reach, targets]
        rec["agg"] = sorted(set(rec.get("agg", [])) | set(aggravating))
        reach = [v[0] for v in rec["posts"].values()]
        counted = {"marketing_followers_30000": rec["followers"], "marketing_accounts_2000": max(reach),
                   "marketing_posts_100": len(rec["posts"])}
        met = [fid for fid, value in counted.items() if value >= self.law.limit(fid)]
        new = [fid for fid in met if fid not in rec["fired"]]
        alerts = []
        if new:
            rec["fired"] += new
            about: dict[str, int] = {}
            for _reach, targets in rec["posts"].values():
                for target in targets:
                    about[target] = about.get(target, 0) + 1
            targets = sorted(about, key=lambda tg: (-about[tg], tg))
            alerts.append(raise_alert(
                rec["alerts"], kind="illegal_marketing", subject=("account", author), ts=t, severity="critical",
                platform=p,
                summary=f"Public account {author} pushed {len(rec['posts'])} harmful posts about "
                + (f"{len(targets)} persons" if len(targets) > 1 else "the target")
                + f" ({', '.join(met)}): candidate illegal marketing of online violence.",
                legal_refs=["Opinions 法发〔2023〕14号 (蹭炒热度, 推广引流)", "Criminal Law Art. 287-1",
                            *sorted({self.law.source(fid).split(" with ")[-1] for fid in met})],
                aggravating=rec["agg"],
                evidence={"accounts": [author], "account_id": author, "measured_per": "account",
                          "posts": sorted(rec["posts"])[-50:], "target_id": targets[0], "target_ids": targets[:50],
                          "grounds": met, "followers": counted["marketing_followers_30000"],
                          "accounts_reached": counted["marketing_accounts_2000"],
                          "accounts_reached_bound": "largest_post",
                          "accounts_reached_sum": sum(reach),
                          "post_count": counted["marketing_posts_100"],
                          "roles": roles.marketing({author: rec["followers"]})},
                shadow=self.s.shadow))
        ctx.records.save("pusher", p, author, record=rec, until=t + self.s.item_ttl_s)
        return alerts


def cascade_detectors(settings: CascadeSettings | None = None, law: LawSettings | None = None) -> list:
    """Cascades as they run: the watch first (it hands findings on), then the author-keyed raiser."""
    return [CascadeWatch(settings, law), Cascades(settings, law)]
