"""Water-army (水军) campaigns: accounts that act together, again and again, on distinct objects.

The rule, in the order the code applies it to each post:

1. Objects. A post acts on objects: the post it reposts or answers, its URLs, hashtags and
   targets, and its near-duplicate text cluster (MinHash LSH over normalised Chinese text).
2. Co-action. Another account that acted on the same object shortly before (``object_window_s``;
   ``text_window_s`` for near-duplicate text, since slow campaigns spread a wave over many
   minutes) co-acted with this one. An object crowded with accounts weighs less (``mass_accounts``)
   and past ``max_pairing`` accounts pairs no one: hundreds of strangers quoting a headline is
   news, not a campaign.
3. Repetition. Each pair of accounts keeps a decaying weight of the DISTINCT objects it co-acted
   on. A pair is strong when that weight reaches ``min_pair_weight`` and is at least
   ``min_overlap`` of the geometric mean of the two accounts' own (decaying) post counts.
   Chance meetings grow with both accounts' activity: with the less active account's count
   alone, one account posting thousands of times a day paired with quiet strangers and bridged
   campaigns (precision 0.82 on an 800k-post day; 1.00 with the geometric mean).
4. Campaigns. Strong pairs join campaigns (union of sets, the larger absorbing the smaller, so
   the campaign id stays stable as it grows). A campaign of ``min_accounts`` raises
   ``water_army_campaign``; growth is re-reported at most every ``report_every_s``.

Account signals (young accounts, few followers, shared device or IP prefix) are evidence and
raise the score; they never make a campaign on their own. The Opinions' aggravation
(``water_army``, and the members' circumstances) and Criminal Law Art. 246 go only to campaigns
with a target or harmful content (a labelled post); ``provider_organized`` only when a
platform-run account founded the campaign or is its hub. Keyed by platform and ordered: one
stage partition per platform sees that platform's posts in (ts, event_id) order.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field

from detectors import roles
from detectors.text import MIN_CHARS, PERMUTATIONS, bands, exact_key, minhash, normalise, text_key
from events import Alert, AnyEvent, Context, Post, keys as ids, raise_alert
from events.models import HARMFUL_LABELS
from events.records import Indexed, record_key

LEGAL_REFS = ["Opinions on Punishing Online Violence (法发〔2023〕14号): organised water army (组织水军)",
              "Criminal Law Art. 246"]


class WaterArmySettings(BaseModel):
    """Thresholds, all event-time seconds or counts. Set with ``STORMWATCH_WATER_ARMY__<NAME>``."""

    shadow: bool = Field(False, description="Mark alerts as shadow (not delivered): try settings safely.")
    object_window_s: float = Field(300, description="Same repost/reply parent, URL, hashtag or target within this.")
    text_window_s: float = Field(1800, description="Near-duplicate texts within this co-act.")
    min_similarity: float = Field(0.5, description="Estimated Jaccard of character 3-grams for near-duplicates.")
    lsh_rows: int = Field(4, description="Rows per LSH band (32 permutations // rows = bands).")
    bucket_cap: int = Field(16, description="Texts compared per LSH band: those seen last (bounds the work "
                            "of a crowded band).")
    young_object_s: float = Field(3600, description="Only objects first seen this recently pair accounts: "
                                  "a wave is new, a stock phrase or a steady news link is not.")
    mass_accounts: int = Field(50, description="An object weighs 1 up to this many accounts in its window, less after.")
    max_pairing: int = Field(150, description="An object with more accounts in its window pairs no more.")
    max_partners: int = Field(32, description="A post pairs with at most this many co-actors, the most recent: "
                              "enough to connect a large wave, linear in its size.")
    half_life_s: float = Field(86400, description="Pair weights and post counts halve over this.")
    min_pair_weight: float = Field(2.5, description="Decayed weight of distinct shared objects for a strong pair.")
    min_overlap: float = Field(0.1, description="Strong pair weight / geometric mean of the two accounts' posts.")
    min_accounts: int = Field(5, description="Members before a campaign is alerted.")
    report_every_s: float = Field(300, description="Growth of a campaign is re-reported at most this often.")
    young_account_days: float = Field(30, description="Accounts younger than this count as young (evidence).")
    low_followers: int = Field(20, description="Accounts with fewer followers count as low-follower (evidence).")
    critical_members: int = Field(50, description="A campaign this large is critical even with no aggravating "
                                  "circumstance: a coordinated crowd that size is a mass attack in itself.")
    objects_per_pair: int = Field(32, description="Distinct objects a pair remembers (the newest), to count only new "
                                  "ones: bounds a pair's record whatever its history.")
    posts_kept: int = Field(20, description="Sample posts a campaign alert names (the newest).")
    score_base: float = Field(0.55, description="Score of a campaign with no supporting signal; each weight below "
                              "adds its share (the score ranks, it never makes a campaign).")
    score_density: float = Field(0.15, description="Weight of strong pairs per member (capped at 1).")
    score_young: float = Field(0.1, description="Weight of the share of young accounts.")
    score_low_followers: float = Field(0.1, description="Weight of the share of low-follower accounts.")
    score_shared: float = Field(0.1, description="Weight of the share of members sharing a device or IP prefix.")


@functools.lru_cache(maxsize=64)
def lsh_terms(platform: str, hexsig: str, rows: int) -> tuple[str, ...]:
    """A signature's LSH bands on its platform. Cached: a new text looks its bands up, then
    saving its ``sig`` record indexes it under the same ones."""
    return tuple(record_key("lsh", platform, band) for band in bands(hexsig, rows))


def _decay(value: float, since: float, now: float, half_life: float) -> float:
    return value * math.exp2(-(now - since) / half_life) if now > since else value


def _aggravating(post: Post) -> list[str]:
    found = []
    if any(t.minor for t in post.targets):
        found.append("minor_target")
    if any(t.disabled for t in post.targets):
        found.append("disabled_target")
    if "sexual_rumor" in post.labels:
        found.append("sexual_topic")
    if post.synthetic:
        found.append("deep_synthesis")
    if post.account is not None and post.account.platform_operated:
        found.append("provider_organized")
    return found


def _aims(post: Post) -> list[str]:
    """What makes a campaign online violence rather than, say, promotion: a target, harmful content."""
    return [a for a, present in (("harmful", bool(HARMFUL_LABELS & set(post.labels))),
                                 ("targeted", bool(post.targets))) if present]


class WaterArmy:
    """Raises ``water_army_campaign`` alerts; see the module docstring for the rule."""

    name: ClassVar[str] = "water_army"
    raises: ClassVar[tuple[str, ...]] = ("water_army_campaign",)
    event_types: ClassVar[frozenset[str]] = frozenset({"post"})
    ordered: ClassVar[bool] = True
    stage: ClassVar[str] = "platform"  # shares a Kafka stage with the other platform-keyed detectors

    def __init__(self, settings: WaterArmySettings | None = None) -> None:
        self.s = settings or WaterArmySettings()
        self.keep_s = 4 * self.s.half_life_s  # pairs, accounts and campaigns: gone after four half-lives
        # near-duplicate texts by LSH band (events.records), the bucket_cap findable longest per band
        self.indexes = {"sig": Indexed(self._sig_terms, self.s.bucket_cap)}

    def keys(self, event: AnyEvent) -> list[str]:
        return [event.platform]

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        platform, cid = ids.parts(key)
        camp = ctx.records.get("campaign", platform, cid)
        if camp is None or camp.get("into") or len(camp["members"]) == camp["reported"]:
            return []
        return [self._report(platform, cid, camp, camp["t"], ctx)]

    # -- one post ---------------------------------------------------------------------------

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        if not isinstance(event, Post):  # event_types says posts only; a routing bug must not pass silently
            raise TypeError(f"water army takes posts, got {type(event).__name__}")
        t, me = event.epoch, event.account_id
        flags = _aggravating(event)
        n_me = self._count_post(key, event, flags, t, ctx)
        pairing: list[tuple[str, float, dict]] = []  # (object, weight, its members) for objects that pair
        for obj in self._objects(event):
            self._co_act(key, obj, event, t, ctx, pairing)
        self._co_text(key, event, t, ctx, pairing)
        alerts: list[Alert] = []
        for other in self._partners(me, pairing):
            weight, objs, posts, aims = 0.0, [], [], set(_aims(event))
            for obj, w, members in pairing:
                seen = members.get(other)
                if seen is not None:
                    weight = max(weight, w)  # one occasion: the best-weighted object that links the two
                    objs.append(obj)
                    aims.update(seen[2] if len(seen) > 2 else ())  # the partner's post's aims
                    if seen[1] not in posts:
                        posts.append(seen[1])
            if self._pair(key, me, other, weight, objs, posts, n_me, t, ctx):
                alerts.extend(self._join(key, me, other, t, objs, posts + [event.post_id], flags, ctx, sorted(aims)))
        return alerts

    def _partners(self, me: str, pairing: list[tuple[str, float, dict]]) -> list[str]:
        """The co-actors this post pairs with, sorted: all of them, or the ``max_partners`` most
        recent (by their latest act on any shared object; ties by name).

        Members are kept in time order, so only the newest ``max_partners`` of each object (and
        any tied with the last of them) can be among the most recent overall: a crowded object
        costs ``max_partners`` lookups, not one per member.
        """
        cap = self.s.max_partners
        latest: dict[str, float] = {}
        for _obj, _w, members in pairing:
            taken, edge = 0, None
            for other in reversed(members):
                ts = members[other][0]
                if other == me:
                    continue
                if taken >= cap and ts != edge:
                    break
                taken, edge = taken + 1, ts
                if ts > latest.get(other, -math.inf):
                    latest[other] = ts
        if len(latest) > cap:
            return sorted(sorted(latest, key=lambda a: (-latest[a], a))[:cap])
        return sorted(latest)

    @staticmethod
    def _objects(post: Post) -> list[str]:
        objs = []
        if post.parent_id is not None:
            objs.append(("rp:" if post.kind == "repost" else "re:") + post.parent_id)
        objs += ["url:" + u for u in post.urls] + ["tag:" + h.strip("#").lower() for h in post.hashtags]
        objs += ["tgt:" + t.id for t in post.targets]
        return sorted(set(objs))

    def _count_post(self, platform: str, post: Post, flags: list[str], t: float, ctx: Context) -> float:
        """Decayed post count of the author, and what the author's profile says (evidence)."""
        rec = ctx.records.get("account", platform, post.account_id) or {"n": 0.0, "t": t}
        rec["n"] = _decay(rec["n"], rec["t"], t, self.s.half_life_s) + 1.0
        rec["t"] = t
        acct = post.account
        if acct is not None:
            young = acct.created_at is not None and t - acct.created_at.timestamp() < self.s.young_account_days * 86400
            rec["sig"] = [young, acct.followers < self.s.low_followers, acct.device_id, acct.ip_prefix]
        if flags:
            rec["flags"] = sorted(set(rec.get("flags", [])) | set(flags))
        if acct is not None and acct.platform_operated:
            rec["operated"] = True  # provider_organized needs it of a founder or the hub (see _provider)
        ctx.records.save("account", platform, post.account_id, record=rec, until=t + self.keep_s)
        return rec["n"]

    def _weight(self, accounts: int) -> float:
        return min(1.0, self.s.mass_accounts / max(accounts, 1))

    def _co_act(self, platform: str, obj: str, post: Post, t: float, ctx: Context,
                pairing: list[tuple[str, float, dict]], window: float | None = None) -> None:
        """Record this post's act on ``obj``; if the object still pairs, the accounts that acted
        on it within the window co-act with this post's author (``pairing``)."""
        window = self.s.object_window_s if window is None else window
        rec = ctx.records.get("object", platform, obj) or {"m": {}, "first": t}
        members = rec["m"]
        members.pop(post.account_id, None)
        horizon = t - window
        while members and next(iter(members.values()))[0] < horizon:  # insertion order = time order
            del members[next(iter(members))]
        if members and len(members) < self.s.max_pairing and t - rec["first"] <= self.s.young_object_s:
            pairing.append((obj, self._weight(len(members) + 1), members))
        aims = _aims(post)
        members[post.account_id] = [t, post.post_id, aims] if aims else [t, post.post_id]
        while len(members) > self.s.max_pairing + 1:  # crowded: keep the newest
            del members[next(iter(members))]
        ctx.records.save("object", platform, obj, record=rec, until=t + window)

    def _co_text(self, platform: str, post: Post, t: float, ctx: Context, pairing: list[tuple[str, float, dict]]) -> None:
        """Near-duplicate texts (not reposts, which carry their parent's text) co-act.

        A text joins a cluster: the cluster of an identical normalised text (one lookup, no
        MinHash), or the cluster of the most similar recent text sharing an LSH band with it
        (verified by estimated Jaccard similarity), or a new cluster of its own. The cluster is
        then an object like any other, with the longer ``text_window_s``.
        """
        if post.kind == "repost":
            return
        norm = normalise(post.text)
        if len(norm) < MIN_CHARS:
            return
        s = self.s
        digest = text_key(norm)
        exact = ctx.records.get("text", platform, digest)
        if exact is None:
            exact = {"c": self._cluster(platform, digest, post, minhash(norm), t, ctx)}
        ctx.records.save("text", platform, digest, record=exact, until=t + s.text_window_s)
        cluster = exact["c"]
        self._co_act(platform, "text:" + cluster, post, t, ctx, pairing, s.text_window_s)

    def _sig_terms(self, record_ids: list[str], record: dict) -> tuple[str, ...]:
        """The terms of a ``sig`` record in ``indexes``: its signature's LSH bands, on its platform."""
        return lsh_terms(record_ids[0], record["s"], self.s.lsh_rows)

    def _cluster(self, platform: str, digest: str, post: Post, sig: np.ndarray, t: float, ctx: Context) -> str:
        """The cluster of a text not seen verbatim before.

        Each such text leaves a ``sig`` record (its signature and cluster), found by its LSH
        bands through an in-memory index (``indexes``, see ``events.records``): one state write
        per text where a record per band cost eight. It stays findable for ``text_window_s``
        when the text joined a cluster, for ``object_window_s`` when it started one, since most
        texts are never repeated. Of the texts sharing a band with this one (the ``bucket_cap``
        that stay findable longest, per band), the most similar gives its cluster if similar
        enough (estimated Jaccard); else the text starts its own."""
        s = self.s
        hexsig = exact_key(sig)
        candidates: dict[str, tuple[str, str]] = {}  # text digest -> (its cluster, its signature)
        for band in lsh_terms(platform, hexsig, s.lsh_rows):
            for found, rec in ctx.records.find("sig", band):
                if rec["until"] >= t:  # still findable (expiry is swept a minute at a time)
                    candidates[found[1]] = (rec["c"], rec["s"])
        cluster, several = post.post_id, False
        if candidates:
            ranked = sorted(candidates.values())  # by cluster, then signature: the first of equals wins
            sigs = np.frombuffer(bytes.fromhex("".join(sig_hex for _c, sig_hex in ranked)), dtype=np.uint32)
            same = np.count_nonzero(sigs.reshape(-1, PERMUTATIONS) == sig, axis=1)
            best = int(same.argmax())
            if same[best] >= s.min_similarity * PERMUTATIONS:
                cluster, several = ranked[best][0], True
        ctx.records.save("sig", platform, digest, record={"c": cluster, "s": hexsig},
                         until=t + (s.text_window_s if several else s.object_window_s))
        return cluster

    # -- pairs and campaigns ----------------------------------------------------------------

    def _pair(self, platform: str, me: str, other: str, weight: float, objs: list[str], posts: list[str],
              n_me: float, t: float, ctx: Context) -> bool:
        """Add one co-action to the pair; True when the pair has just become strong."""
        s = self.s
        a, b = sorted((me, other))
        rec = ctx.records.get("pair", platform, a, b) or {"w": 0.0, "t": t, "o": [], "strong": False}
        seen = rec["o"]
        new = [o for o in objs if o not in seen]
        if not new:
            return False  # nothing new: repetition must be over distinct objects
        rec["o"] = (seen + new)[-s.objects_per_pair:]
        rec["w"] = _decay(rec["w"], rec["t"], t, s.half_life_s) + weight
        rec["t"] = t
        became = False
        if not rec["strong"] and rec["w"] >= s.min_pair_weight - 1e-9:  # decay leaves 1.9999... for 2
            other_rec = ctx.records.get("account", platform, other)
            n_other = _decay(other_rec["n"], other_rec["t"], t, s.half_life_s) if other_rec else 1.0
            if rec["w"] >= s.min_overlap * math.sqrt(n_me * n_other):
                rec["strong"] = became = True
        ctx.records.save("pair", platform, a, b, record=rec, until=t + self.keep_s)
        return became

    def _join(self, platform: str, me: str, other: str, t: float, objs: list[str], posts: list[str],
              flags: list[str], ctx: Context, aims: list[str] = ()) -> list[Alert]:
        closed: list[Alert] = []
        mine, theirs = ctx.records.get("member", platform, me), ctx.records.get("member", platform, other)
        if mine is None and theirs is None:
            digest = hashlib.blake2b(ids.scoped(platform, min(me, other), repr(t)).encode(), digest_size=6).hexdigest()
            cid = f"campaign-{digest}"
            camp = {"members": {}, "first": t, "t": t, "objs": {}, "posts": [], "flags": [], "reported": 0,
                    "alerts": {}, "pairs": 0}
        else:
            cid = (mine or theirs)["c"]
            camp = ctx.records.get("campaign", platform, cid)
            if mine is not None and theirs is not None and mine["c"] != theirs["c"]:
                cid, camp, closed = self._merge(platform, mine["c"], theirs["c"], t, ctx)
        for account in (me, other):
            if account not in camp["members"]:
                camp["members"][account] = t
                member_flags = (ctx.records.get("account", platform, account) or {}).get("flags", [])
                camp["flags"] = sorted(set(camp["flags"]) | set(member_flags))
            member = ctx.records.get("member", platform, account) or {}
            member["c"] = cid
            ctx.records.save("member", platform, account, record=member, until=t + self.keep_s)
        camp["flags"] = sorted(set(camp["flags"]) | set(flags))
        camp["aims"] = sorted(set(camp.get("aims", [])) | set(aims) | ({"targeted"} if any(
            o.startswith("tgt:") for o in objs) else set()))
        degree = camp.setdefault("deg", {})  # strong pairs per member: who is the hub
        for account in (me, other):
            degree[account] = degree.get(account, 0) + 1
        for o in objs:
            camp["objs"][o] = camp["objs"].get(o, 0) + 1
        camp["posts"] = (camp["posts"] + [p for p in posts if p not in camp["posts"]])[-self.s.posts_kept:]
        camp["pairs"] += 1
        camp["t"] = t
        ctx.records.save("campaign", platform, cid, record=camp, until=t + self.keep_s)
        if len(camp["members"]) < self.s.min_accounts or len(camp["members"]) == camp["reported"]:
            return closed
        if camp["reported"] == 0:
            return closed + [self._report(platform, cid, camp, t, ctx)]
        ctx.set_timer(ids.key(platform, cid), camp.get("next", t))
        return closed

    def _merge(self, platform: str, c1: str, c2: str, t: float, ctx: Context) -> tuple[str, dict, list[Alert]]:
        """The larger campaign (then the older, then the smaller id) absorbs the other.

        If the absorbed one was already alerted, a last version of its alert says where it went,
        so a consumer keeping the latest version per ``alert_id`` does not count it twice.
        """
        a, b = ctx.records.get("campaign", platform, c1), ctx.records.get("campaign", platform, c2)
        (keep, kc), (gone, gc) = sorted([(a, c1), (b, c2)], key=lambda x: (-len(x[0]["members"]), x[0]["first"], x[1]))
        for account in gone["members"]:
            keep["members"].setdefault(account, gone["members"][account])
            member = ctx.records.get("member", platform, account) or {}
            member["c"] = kc
            ctx.records.save("member", platform, account, record=member, until=gone["t"] + self.keep_s)
        keep["flags"] = sorted(set(keep["flags"]) | set(gone["flags"]))
        keep["aims"] = sorted(set(keep.get("aims", [])) | set(gone.get("aims", [])))
        degree = keep.setdefault("deg", {})
        for account, n in gone.get("deg", {}).items():
            degree[account] = degree.get(account, 0) + n
        for o, n in gone["objs"].items():
            keep["objs"][o] = keep["objs"].get(o, 0) + n
        keep["posts"] = (keep["posts"] + gone["posts"])[-self.s.posts_kept:]
        keep["pairs"] += gone["pairs"]
        keep["first"] = min(keep["first"], gone["first"])
        gone["into"] = kc
        closed = []
        if gone["reported"]:
            closed.append(raise_alert(
                gone["alerts"], kind="water_army_campaign", subject=("campaign", gc), ts=t, severity="info",
                platform=platform, summary=f"Campaign {gc} turned out to be part of campaign {kc}; see that alert.",
                legal_refs=LEGAL_REFS if gone.get("aims") else [],
                aggravating=["water_army"] if gone.get("aims") else [],
                evidence={"accounts": sorted(gone["members"]), "posts": gone["posts"], "objects": [],
                          "score": 0.0, "merged_into": kc}, shadow=self.s.shadow))
        ctx.records.save("campaign", platform, gc, record=gone, until=gone["until"])
        return kc, keep, closed

    def _report(self, platform: str, cid: str, camp: dict, t: float, ctx: Context) -> Alert:
        s = self.s
        members = sorted(camp["members"])
        records = [ctx.records.get("account", platform, m) or {} for m in members]
        signals = [r.get("sig") for r in records]
        posts = {m: _decay(r["n"], r["t"], t, s.half_life_s) for m, r in zip(members, records) if "n" in r}
        known = [x for x in signals if x]
        young = sum(1 for x in known if x[0]) / len(members)
        low = sum(1 for x in known if x[1]) / len(members)
        shared = 0.0
        for index in (2, 3):  # device, IP prefix: share of members who share one with another member
            counts = Counter(x[index] for x in known if x[index])
            shared = max(shared, sum(n for n in counts.values() if n > 1) / len(members))
        density = min(1.0, camp["pairs"] / len(members))  # strong pairs per member
        score = round(min(1.0, s.score_base + s.score_density * density + s.score_young * young
                          + s.score_low_followers * low + s.score_shared * shared), 3)
        # The Opinions' circumstances are of online violence: a campaign with no target and no
        # harmful content (promotion, say) is coordinated but carries none of them, nor Art. 246.
        aims = camp.get("aims", [])
        provider = self._provider(camp, dict(zip(members, records)))
        flags = [f for f in camp["flags"] if f not in ("water_army", "provider_organized")]
        aggravating = ["water_army", *sorted(flags + (["provider_organized"] if provider else []))] if aims else []
        severe = {"minor_target", "disabled_target", "sexual_topic", "provider_organized"} & set(aggravating)
        objects = sorted(camp["objs"], key=lambda o: (-camp["objs"][o], o))[:10]
        camp["reported"] = len(members)
        camp["next"] = t + s.report_every_s
        alert = raise_alert(
            camp["alerts"], kind="water_army_campaign", subject=("campaign", cid), ts=t,
            severity="critical" if severe or len(members) >= s.critical_members else "warning", platform=platform,
            summary=f"{len(members)} accounts on {platform} act in coordination (candidate water army) "
            f"on {len(camp['objs'])} shared objects.",
            legal_refs=LEGAL_REFS if aims else [], aggravating=aggravating,
            evidence={"accounts": members, "posts": camp["posts"], "objects": objects, "score": score,
                      "strong_pairs": camp["pairs"], "young_accounts": round(young, 3),
                      "low_follower_accounts": round(low, 3), "shared_device_or_ip": round(shared, 3),
                      "harmful_content": "harmful" in aims, "targeted": "targeted" in aims,
                      **({"provider_organized_by": provider} if provider and aims else {}),
                      "roles": roles.campaign(camp["members"], camp.get("deg", {}), posts, s.half_life_s)},
            shadow=s.shadow,
        )
        ctx.records.save("campaign", platform, cid, record=camp, until=camp["until"])
        return alert

    @staticmethod
    def _provider(camp: dict, accounts: dict[str, dict]) -> list[str]:
        """Platform-run members that initiated or organised the campaign (the Opinions: 网络服务
        提供者发起、组织): among its founders (the first strong pair) or its hub (strictly more
        strong pairs than the members' average), not merely taking part. ``accounts``: the
        members' account records, as the report read them."""
        members, degree = camp["members"], camp.get("deg", {})
        founded = min(members.values())
        average = 2 * camp["pairs"] / len(members)
        top = max(degree.values(), default=0)
        leading = {m for m, at in members.items() if at == founded}
        leading |= {m for m, n in degree.items() if n == top and n > average}
        return sorted(m for m in leading if m in members and accounts.get(m, {}).get("operated"))
