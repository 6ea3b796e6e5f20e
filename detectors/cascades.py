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

Keyed by platform and ordered, like the water-army detector, so a root and its reposts meet
in one partition in event-time order.
"""

from __future__ import annotations

import bisect
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from compliance import cases
from compliance.law import LawSettings
from detectors import roles, seismic
from events import Alert, AnyEvent, Case, Context, Engagement, Post, Report, format_ts, raise_alert
from events.models import HARMFUL_LABELS

HARMFUL = HARMFUL_LABELS
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


class Cascades:
    """Legal figures, viral spread and illegal marketing; see the module docstring."""

    name: ClassVar[str] = "cascades"
    raises: ClassVar[tuple[str, ...]] = ("legal_threshold", "viral_spread", "illegal_marketing")
    event_types: ClassVar[frozenset[str]] = frozenset({"post", "engagement", "report", "case"})
    ordered: ClassVar[bool] = True
    stage: ClassVar[str] = "platform"  # shares a Kafka stage with the other platform-keyed detectors

    def __init__(self, settings: CascadeSettings | None = None, law: LawSettings | None = None) -> None:
        self.s = settings or CascadeSettings()
        self.law = law or LawSettings()

    def keys(self, event: AnyEvent) -> list[str]:
        if isinstance(event, Case) and event.subject.type != "account":
            return []
        return [event.platform]

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        p = key  # the platform
        if isinstance(event, Post):
            return self._post(p, event, ctx)
        if isinstance(event, Case):
            return self._case(p, event, ctx)
        if isinstance(event, Engagement):
            item = self._item(p, event.post_id, event.epoch, ctx)
            grew = False
            for field in ("views", "reposts", "comments", "reach_accounts"):
                value = getattr(event, field)
                if value > item["eng"].get(field, 0):  # cumulative counters: a lower value is stale
                    item["eng"][field], grew = value, True
            alerts = self._check(p, event.post_id, item, event.epoch, ctx) if grew else []
            self._save(p, event.post_id, item, event.epoch, ctx)
            return alerts
        if isinstance(event, Report) and event.post_id is not None and event.category == "defamation":
            item = self._item(p, event.post_id, event.epoch, ctx)
            if event.reporter_id not in item["reporters"]:
                item["reporters"].append(event.reporter_id)
            self._save(p, event.post_id, item, event.epoch, ctx)
        return []

    # -- posts --------------------------------------------------------------------------------

    def _post(self, p: str, post: Post, ctx: Context) -> list[Alert]:
        t, s = post.epoch, self.s
        root = post.root_id or (self._root_of(p, post.parent_id, ctx) if post.parent_id else post.post_id)
        if root != post.post_id:
            ctx.records.save("root", p, post.post_id, record={"root": root}, until=t + s.item_ttl_s)
        elif ctx.records.has("root", p, post.post_id):  # a later version of it is its own root
            ctx.records.delete("root", p, post.post_id)
        alerts: list[Alert] = []
        touched: dict[str, dict] = {}
        if post.kind == "original" or post.post_id == root or "defamation" in post.labels:
            item = touched[post.post_id] = self._item(p, post.post_id, t, ctx)
            item["author"] = post.account_id
            item["labels"] = sorted(set(item["labels"]) | set(post.labels))
            item["targets"] = sorted(set(item["targets"]) | {tg.id for tg in post.targets})
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
                if item_id is None or (item_id != root and not self._exists(p, item_id, ctx)):
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
        elif post.kind in ("comment", "reply") and root != post.post_id and self._exists(p, root, ctx):
            item = touched.get(root) or self._item(p, root, t, ctx)
            touched[root] = item
            item["comments"] += 1
        for item_id, item in touched.items():
            alerts.extend(self._check(p, item_id, item, t, ctx))
            self._save(p, item_id, item, t, ctx)
        return alerts

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

    # -- the rules ----------------------------------------------------------------------------

    @staticmethod
    def figures(item: dict) -> dict[str, int]:
        eng = item["eng"]
        return {"views": eng.get("views", 0), "reposts": max(eng.get("reposts", 0), item["reposts"]),
                "comments": max(eng.get("comments", 0), item["comments"]),
                "reach_accounts": max(eng.get("reach_accounts", 0), len(item["accounts"]))}

    def _check(self, p: str, item_id: str, item: dict, t: float, ctx: Context) -> list[Alert]:
        alerts: list[Alert] = []
        fig = self.figures(item)
        platform = p
        defamatory = "defamation" in item["labels"]
        if defamatory:
            for fid, value in (("defamation_views_5000", fig["views"]), ("defamation_reposts_500", fig["reposts"])):
                limit = self.law.limit(fid)
                if value >= limit and fid not in item["fired"]:
                    item["fired"].append(fid)
                    item.setdefault("named_at", t)  # its author is named: a later item about its targets repeats
                    alerts.append(raise_alert(
                        item["alerts"], kind="legal_threshold", subject=("post", item_id), window=fid, ts=t,
                        severity="critical", platform=platform,
                        summary=f"Defamatory post {item_id} reached {value:,} {fid.split('_')[1]} "
                        f"(figure {limit:,}, {self.law.source(fid)}): candidate serious circumstances.",
                        legal_refs=DEFAMATION_REFS, aggravating=self._aggravating(item),
                        evidence={"threshold": fid, "value": value, "limit": limit, "post_id": item_id,
                                  "account_id": item["author"], **fig,
                                  "defamation_reports": len(item["reporters"]),
                                  "roles": self._roles(p, item_id, item, ctx)},
                        shadow=self.s.shadow))
            if item["author"] is not None:
                alerts.extend(self._cumulative(p, item_id, item, fig, t, ctx))
        if defamatory or item["reporters"] or HARMFUL & set(item["labels"]):
            alerts.extend(self._viral(platform, item_id, item, fig, t, ctx))
        if item.get("public") and HARMFUL & set(item["labels"]) and item["targets"]:
            alerts.extend(self._marketing(p, item_id, item, fig, t, ctx))
        return alerts

    def _aggravating(self, item: dict) -> list[str]:
        """The Opinions' circumstances the item shows: its targets, its content, its author."""
        found = set(item.get("agg", [])) | ({"sexual_topic"} if "sexual_rumor" in item["labels"] else set())
        return sorted(found)

    def _cumulative(self, p: str, item_id: str, item: dict, fig: dict, t: float, ctx: Context) -> list[Alert]:
        """2013-21 Art. 4: one author's defamatory items within a year, aggregated."""
        acct = ctx.records.get("author", p, item["author"]) or {"items": {}, "fired": [], "alerts": {}}
        window = self.law.limit("defamation_cumulative_1y") * 86400.0
        acct["items"][item_id] = [item["t0"], fig["views"], fig["reposts"]]
        if "named_at" in item:  # an alert named the author over this item: its targets, for repeats (roles)
            named = acct.setdefault("named", {})
            for target in item["targets"]:
                named.setdefault(target, item["named_at"])
            while len(named) > roles.MAX_NAMED:
                del named[next(iter(named))]
        acct["items"] = {k: v for k, v in acct["items"].items() if v[0] >= t - window}
        record = cases.cases_of(ctx.records, p, "account", item["author"])
        handled = cases.handled_until(record)  # 未经处理: conduct a case dealt with is not counted again
        unhandled = {k: v for k, v in acct["items"].items() if v[0] > handled}
        alerts = self._after_penalty(p, item["author"], acct, record, t) if record else []
        if len(unhandled) >= self.law.limit("defamation_repeat_3") and "cumulative" not in acct["fired"]:
            views = sum(v[1] for v in unhandled.values())
            reposts = sum(v[2] for v in unhandled.values())
            for figure, value, limit in (("views", views, self.law.limit("defamation_views_5000")),
                                         ("reposts", reposts, self.law.limit("defamation_reposts_500"))):
                if value >= limit and "cumulative" not in acct["fired"]:
                    acct["fired"].append("cumulative")
                    account = item["author"]
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
        ctx.records.save("author", p, item["author"], record=acct, until=t + window)
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

    def _roles(self, p: str, item_id: str, item: dict, ctx: Context) -> list[dict]:
        """``evidence.roles`` of an item's alert (see :mod:`detectors.roles`)."""
        author = item.get("author")
        if author is None:
            return roles.cascade(item_id, item, [], {})
        known = cases.cases_of(ctx.records, p, "account", author)
        named = (ctx.records.get("author", p, author) or {}).get("named", {})
        return roles.cascade(item_id, item, known["cases"] if known else [], named)

    def _viral(self, platform: str, item_id: str, item: dict, fig: dict, t: float, ctx: Context) -> list[Alert]:
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
            aggravating=self._aggravating(item),
            evidence={"post_id": item_id, "views": fig["views"], "reposts": fig["reposts"],
                      "reach_accounts": fig["reach_accounts"], "reposts_in_window": len(item["recent"]),
                      "forecast": forecast or {"horizon_s": s.forecast_horizon_s, "views": None, "reposts": None},
                      "roles": self._roles(platform, item_id, item, ctx)},
            shadow=s.shadow)]

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

    def _marketing(self, p: str, item_id: str, item: dict, fig: dict, t: float, ctx: Context) -> list[Alert]:
        """One public account pushing harmful posts about persons, against 2019-15 Art. 10(4).

        Measured per offender, the account: "情节严重" is one offender's, so unrelated accounts
        posting about one person are not summed. An organised group acting together could be
        summed, but the campaigns that show organisation live in the water-army detector's own
        state; the group's figures are left to the reviewer of that ``water_army_campaign``.
        Accounts reached: events do not name readers, so one reader of two posts cannot be told
        from two readers; the figure is the largest count of one post (a lower bound that counts
        no reader twice), and the sum over posts is given as the upper bound.
        """
        author = item["author"]
        rec = ctx.records.get("pusher", p, author) or {"posts": {}, "followers": 0, "fired": [], "alerts": {}}
        rec["followers"] = max(rec["followers"], item.get("followers", 0))
        rec["posts"][item_id] = [fig["reach_accounts"], item["targets"][:20]]
        rec["agg"] = sorted(set(rec.get("agg", [])) | set(self._aggravating(item)))
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
