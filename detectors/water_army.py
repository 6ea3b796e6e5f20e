"""Water-army (水军) campaigns: accounts that act together, again and again, on distinct objects.

The rule, in the order a post meets it:

1. Objects. A post acts on objects: the post it reposts or answers, its URLs, hashtags and
   targets, and each LSH band of its text's MinHash signature (normalised Chinese text; a
   band is where near-duplicates meet).
2. Co-action. Another account that acted on the same object shortly before (``object_window_s``;
   ``text_window_s`` for text, since slow campaigns spread a wave over many minutes) co-acted
   with this one; on a text band only if its text is similar enough (estimated Jaccard
   ``min_similarity``). An object crowded with accounts weighs less (``mass_accounts``) and
   past ``max_pairing`` accounts pairs no one: hundreds of strangers quoting a headline is
   news, not a campaign. Only fresh objects pair (``young_object_s``).
3. Repetition. Each pair of accounts keeps a decaying weight of the DISTINCT objects it co-acted
   on, one occasion (a post) counting once. A pair is strong when that weight reaches
   ``min_pair_weight`` and is at least ``min_overlap`` of the geometric mean of the two
   accounts' own (decaying) post counts. Chance meetings grow with both accounts' activity:
   with the less active account's count alone, one account posting thousands of times a day
   paired with quiet strangers and bridged campaigns (precision 0.82 on an 800k-post day).
4. Campaigns. Strong pairs join campaigns (union of sets, the larger absorbing the smaller, so
   the campaign id stays stable as it grows). A campaign of ``min_accounts`` raises
   ``water_army_campaign``; growth is re-reported at most every ``report_every_s``.

Each step is a detector keyed its own way, so one busy platform spreads over partitions
(issue 15) and only rare events meet on one: ``ArmyAccounts`` (platform + account: the
author's post count and profile, the text's signature, computed once) hands each post's act
to ``ArmyObjects`` (platform + object), which hands each co-action to ``ArmyPairs`` (platform
+ account pair), which hands the pairs that have just become strong to ``WaterArmy``
(platform: campaigns), a batch per partition and ``assemble_every_s`` of event time. Every
stage is ordered, so each sees its events in ``(ts, event_id)`` order whatever the partition
count, and the campaigns join each interval's pairs in that order.

Account signals (young accounts, few followers, shared device or IP prefix) are evidence and
raise the score; they never make a campaign on their own. The Opinions' aggravation
(``water_army``, and the members' circumstances) and Criminal Law Art. 246 go only to campaigns
with a target or harmful content (a labelled post); ``provider_organized`` only when a
platform-run account founded the campaign or is its hub.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from datetime import datetime, timezone
from typing import ClassVar

import numpy as np
import orjson
from pydantic import BaseModel, Field

from detectors import roles
from detectors.text import MIN_CHARS, PERMUTATIONS, bands, exact_key, minhash, normalise
from events import Alert, AnyEvent, ArmyAct, CoAction, Context, Post, StrongPair, StrongPairs, keys as ids, raise_alert
from events.models import HARMFUL_LABELS

LEGAL_REFS = ["Opinions on Punishing Online Violence (法发〔2023〕14号): organised water army (组织水军)",
              "Criminal Law Art. 246"]
TEXT = "text:"  # objects named by an LSH band of a text: ``text:<band>:<its hex>``
# A batch of strong pairs leaves once it holds this many bytes of them (or ``pairs_per_batch``):
# it is one stage record entry and one state record, and Kafka's messages stop at about 1 MB
# (a pair with its objects' names at their longest is about 16 kB).
BATCH_BYTES = 128_000


class WaterArmySettings(BaseModel):
    """Thresholds, all event-time seconds or counts. Set with ``STORMWATCH_WATER_ARMY__<NAME>``."""

    shadow: bool = Field(False, description="Mark alerts as shadow (not delivered): try settings safely.")
    object_window_s: float = Field(300, description="Same repost/reply parent, URL, hashtag or target within this.")
    text_window_s: float = Field(1800, description="Near-duplicate texts within this co-act.")
    min_similarity: float = Field(0.5, description="Estimated Jaccard of character 3-grams for near-duplicates.")
    lsh_rows: int = Field(3, ge=1, le=32, description="Rows (MinHash values) per LSH band.")
    lsh_bands: int = Field(4, ge=1, description="LSH bands of a text's signature (at most 32 // lsh_rows); each is "
                           "an object, so each costs a text one more co-action entry.")
    max_objects: int = Field(16, ge=0, description="Objects a post acts on besides its text (the first by "
                             "name): an honest post has a few; 300 URLs, hashtags and targets would cost 300 "
                             "co-actions.")
    bucket_cap: int = Field(64, ge=1, description="Texts of an LSH band a new text is compared with, the newest: it "
                            "pairs with the near-duplicates among them (bounds the work of a crowded band).")
    young_object_s: float = Field(3600, description="Only objects first seen this recently pair accounts: "
                                  "a wave is new, a stock phrase or a steady news link is not.")
    mass_accounts: int = Field(50, description="An object weighs 1 up to this many accounts in its window, less after.")
    max_pairing: int = Field(150, description="An object with more accounts in its window pairs no more.")
    max_partners: int = Field(32, description="On each object but a text band a post pairs with at most this many "
                              "co-actors, the most recent: enough to connect a large wave, linear in its size.")
    half_life_s: float = Field(86400, description="Pair weights and post counts halve over this.")
    min_pair_weight: float = Field(2.5, description="Decayed weight of distinct shared objects for a strong pair.")
    min_overlap: float = Field(0.1, description="Strong pair weight / geometric mean of the two accounts' posts.")
    min_accounts: int = Field(5, description="Members before a campaign is alerted.")
    report_every_s: float = Field(300, description="Growth of a campaign is re-reported at most this often.")
    young_account_days: float = Field(30, description="Accounts younger than this count as young (evidence).")
    low_followers: int = Field(20, description="Accounts with fewer followers count as low-follower (evidence).")
    critical_members: int = Field(50, description="A campaign this large is critical even with no aggravating "
                                  "circumstance: a coordinated crowd that size is a mass attack in itself.")
    assemble_every_s: float = Field(60.0, ge=0, le=3600, description="Strong pairs reach the campaigns in batches: "
                                    "one per partition of the pair stage and this many seconds of event time, so the "
                                    "one stage partition a platform's campaigns need takes a batch, not an event per "
                                    "pair. The alerts are those of 0 (each pair handed on at once), raised up to this "
                                    "much event time later.")
    pairs_per_batch: int = Field(64, ge=1, le=1000, description="Strong pairs in one batch at most (a fuller interval "
                                 "sends several; so do 128 kB of pairs): a batch is one stage record entry and one "
                                 "state record.")
    objects_per_pair: int = Field(32, description="Distinct objects a pair remembers (the newest), to count only new "
                                  "ones: bounds a pair's record whatever its history.")
    posts_kept: int = Field(20, description="Sample posts a campaign alert names (the newest).")
    score_base: float = Field(0.55, description="Score of a campaign with no supporting signal; each weight below "
                              "adds its share (the score ranks, it never makes a campaign).")
    score_density: float = Field(0.15, description="Weight of strong pairs per member (capped at 1).")
    score_young: float = Field(0.1, description="Weight of the share of young accounts.")
    score_low_followers: float = Field(0.1, description="Weight of the share of low-follower accounts.")
    score_shared: float = Field(0.1, description="Weight of the share of members sharing a device or IP prefix.")


@functools.lru_cache(maxsize=4096)
def signature(norm: str) -> str:
    """A normalised text's MinHash signature as hex. Cached: campaigns repeat texts verbatim."""
    return exact_key(minhash(norm))


def part_id(event_id: str, part: str) -> str:
    """The id of what a stage makes of one event's part (an object, an account): the event's
    id with each NUL written as NUL SOH, two NULs, then the part. Unambiguous (the first two
    NULs end the event's id) and sorting with the event whatever the ids hold: the parts of
    one event sort together, in the order of the events' ids."""
    return f"{event_id.replace(chr(0), chr(0) + chr(1))}\x00\x00{part}"


MAX_NAME = 300  # characters of an object's name; a longer one (a hostile URL or hashtag) goes by its digest


def _name(kind: str, value: str) -> str:
    name = kind + value
    if len(name) <= MAX_NAME:
        return name
    return kind + "~" + hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def interval_end(t: float, every: float) -> float:
    """The end of the interval of ``every`` seconds of event time that ``t`` falls in (``t``
    itself for 0): the time a batch of strong pairs leaves the pair stage. Never before ``t``,
    whatever the floats round to."""
    return float(max(math.ceil(t / every) * every, t)) if every > 0 else float(t)  # a float: one stamp per end


def _stamp(end: float) -> str:
    """An interval's end in a record key: ``repr`` gives back the very float (``float(stamp)``)."""
    return repr(end)


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


def _objects(post: Post, cap: int) -> list[str]:
    """The post's objects besides its text, at most ``cap`` (the first by name), each named
    in at most ``MAX_NAME`` characters: one hostile post's co-action work stays bounded."""
    objs = []
    if post.parent_id is not None:
        objs.append(_name("rp:" if post.kind == "repost" else "re:", post.parent_id))
    objs += [_name("url:", u) for u in post.urls] + [_name("tag:", h.strip("#").lower()) for h in post.hashtags]
    objs += [_name("tgt:", t.id) for t in post.targets]
    return sorted(set(objs))[:cap]


def water_army_detectors(settings: WaterArmySettings | None = None) -> list:
    """The water army's four stages, in the order they hand events on."""
    s = settings or WaterArmySettings()
    return [ArmyAccounts(s), ArmyObjects(s), ArmyPairs(s), WaterArmy(s)]


class ArmyAccounts:
    """Where a post enters: its author's decaying post count and profile (the ``card`` every
    later stage reads), and its objects, a text as the bands of its signature, computed once."""

    name: ClassVar[str] = "army_accounts"
    raises: ClassVar[tuple[str, ...]] = ()
    event_types: ClassVar[frozenset[str]] = frozenset({"post"})
    ordered: ClassVar[bool] = True
    emits: ClassVar[frozenset[str]] = frozenset({"army_objects"})

    def __init__(self, settings: WaterArmySettings) -> None:
        self.s = settings
        self.keep_s = 4 * settings.half_life_s

    def keys(self, event: AnyEvent) -> list[str]:
        return [ids.key(event.platform, event.account_id)]

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        if not isinstance(event, Post):  # event_types says posts only; a routing bug must not pass silently
            raise TypeError(f"the water army takes posts, got {type(event).__name__}")
        flags = _aggravating(event)
        card = self._count_post(event, flags, ctx)
        objects, sig = _objects(event, self.s.max_objects), None
        if event.kind != "repost":  # a repost carries its parent's text: its parent is the object
            norm = normalise(event.text)
            if len(norm) >= MIN_CHARS:
                sig = signature(norm)
                objects += [TEXT + band for band in bands(sig, self.s.lsh_rows)[:self.s.lsh_bands]]
        if objects:
            ctx.emit("army_objects", ArmyAct(
                type="army_act", event_id=event.event_id, platform=event.platform, ts=event.ts,
                post_id=event.post_id, account_id=event.account_id, objects=objects, sig=sig,
                aims=_aims(event), flags=flags, card=card))
        return []

    def _count_post(self, post: Post, flags: list[str], ctx: Context) -> dict:
        """Decayed post count of the author, and what the author's profile says (evidence)."""
        t = post.epoch
        rec = ctx.records.get("account", post.platform, post.account_id) or {"n": 0.0, "t": t}
        rec["n"] = _decay(rec["n"], rec["t"], t, self.s.half_life_s) + 1.0
        rec["t"] = t
        acct = post.account
        if acct is not None:
            young = acct.created_at is not None and t - acct.created_at.timestamp() < self.s.young_account_days * 86400
            rec["sig"] = (young, acct.followers < self.s.low_followers, acct.device_id, acct.ip_prefix)
        if flags:
            rec["flags"] = tuple(sorted(set(rec.get("flags", [])) | set(flags)))
        if acct is not None and acct.platform_operated:
            rec["operated"] = True  # provider_organized needs it of a founder or the hub (see _provider)
        ctx.records.save("account", post.platform, post.account_id, record=rec, until=t + self.keep_s)
        return {k: v for k, v in rec.items() if k != "until"}


class ArmyObjects:
    """Co-action on one object: the accounts that acted on it within its window. Hands each
    post's co-action (its most recent co-actors) to the pairs."""

    name: ClassVar[str] = "army_objects"
    raises: ClassVar[tuple[str, ...]] = ()
    event_types: ClassVar[frozenset[str]] = frozenset()
    receives: ClassVar[frozenset[str]] = frozenset({"army_act"})  # from ArmyAccounts only
    ordered: ClassVar[bool] = True
    emits: ClassVar[frozenset[str]] = frozenset({"army_pairs"})

    def __init__(self, settings: WaterArmySettings) -> None:
        self.s = settings

    def keys(self, event: AnyEvent) -> list[str]:
        return [ids.key(event.platform, obj) for obj in event.objects]

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        s, t, me = self.s, event.epoch, event.account_id
        platform, obj = ids.parts(key)
        text = obj.startswith(TEXT)
        window = s.text_window_s if text else s.object_window_s
        # tuples, and a card of tuples (ArmyAccounts): Python's cycle collector stops scanning a
        # container of plain values, and these live a window, by the hundred thousand
        aims = tuple(event.aims)
        entry = (t, event.post_id, aims, event.card, event.sig) if text else (t, event.post_id, aims, event.card)
        rec = ctx.records.get("object", platform, obj)
        if rec is None:  # most objects (a text's bands above all) are acted on once
            ctx.records.save("object", platform, obj, record={"m": {me: entry}, "first": t}, until=t + window)
            return []
        members = rec["m"]
        members.pop(me, None)
        horizon = t - window
        while members and next(iter(members.values()))[0] < horizon:  # insertion order = time order
            del members[next(iter(members))]
        if members and len(members) < s.max_pairing and t - rec["first"] <= s.young_object_s:
            if text:  # text:<band>:<hex>
                partners = self._similar(members, event.sig, int(obj[len(TEXT):].split(":", 1)[0]))
            else:
                partners = self._newest(members)
            if partners:
                ctx.emit("army_pairs", CoAction(
                    type="co_action", event_id=part_id(event.event_id, obj), platform=platform, ts=event.ts,
                    post_id=event.post_id, account_id=me, object=obj, aims=event.aims, flags=event.flags,
                    weight=min(1.0, s.mass_accounts / (len(members) + 1)), card=event.card, partners=partners))
        members[me] = entry
        while len(members) > s.max_pairing + 1:  # crowded: keep the newest
            del members[next(iter(members))]
        ctx.records.save("object", platform, obj, record=rec, until=t + window)
        return []

    def _newest(self, members: dict) -> list[list]:
        """The ``max_partners`` most recent co-actors (ties at the edge by account)."""
        cap, taken, edge = self.s.max_partners, [], None
        for other in reversed(members):
            ts = members[other][0]
            if len(taken) >= cap and ts != edge:
                break
            taken.append(other)
            edge = ts
        chosen = sorted(taken, key=lambda a: (-members[a][0], a))[:cap]
        return [[a, *members[a][:4]] for a in sorted(chosen)]

    def _similar(self, members: dict, sig: str, band: int) -> list[list]:
        """Of the newest ``bucket_cap`` texts on this band, those similar to ``sig`` that share
        no earlier band with it: two near-duplicates share several bands, and the first of
        them alone hands the pair on (one co-action per pair and post, not one per band)."""
        s = self.s
        newest = list(members)[-s.bucket_cap:]
        sigs = np.frombuffer(bytes.fromhex("".join(members[a][4] for a in newest)), dtype=np.uint32)
        equal = sigs.reshape(len(newest), PERMUTATIONS) == np.frombuffer(bytes.fromhex(sig), dtype=np.uint32)
        close = np.count_nonzero(equal, axis=1) >= s.min_similarity * PERMUTATIONS
        if band:  # not if it shares an earlier band
            earlier = equal[:, :band * s.lsh_rows].reshape(len(newest), band, s.lsh_rows).all(axis=2).any(axis=1)
            close &= ~earlier
        return [[a, *members[a][:4]] for a in sorted(a for a, near in zip(newest, close.tolist()) if near)]


class ArmyPairs:
    """Repetition: a pair's decaying weight over distinct objects. Hands the pairs that have
    just become strong to the campaigns, a batch per partition and ``assemble_every_s``: the
    campaigns are one stage partition per platform, and a dense campaign makes a strong pair of
    most of its members' pairs (12% of coord_synth's input events, issue 15)."""

    name: ClassVar[str] = "army_pairs"
    raises: ClassVar[tuple[str, ...]] = ()
    event_types: ClassVar[frozenset[str]] = frozenset()
    receives: ClassVar[frozenset[str]] = frozenset({"co_action"})  # from ArmyObjects only
    ordered: ClassVar[bool] = True
    emits: ClassVar[frozenset[str]] = frozenset({"water_army"})

    def __init__(self, settings: WaterArmySettings) -> None:
        self.s = settings
        self.keep_s = 4 * settings.half_life_s

    def keys(self, event: AnyEvent) -> list[str]:
        me = event.account_id
        return [ids.key(event.platform, *sorted((me, p[0]))) for p in event.partners]

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        """An interval ended on this partition: its batch of strong pairs (what is left of it) leaves."""
        platform, here, stamp = ids.parts(key)
        batch = ctx.records.get("batch", platform, here, stamp)
        if batch is not None:
            self._send(platform, here, stamp, batch, ctx)
            ctx.records.delete("batch", platform, here, stamp)
        return []

    def _hold(self, pair: StrongPair, ctx: Context) -> None:
        """Into this partition's batch for the interval the pair falls in. Partition-local (its
        key names ``ctx.partition``): which pairs share a batch depends on the partition count,
        and the campaigns take each interval's batches together, so nothing else does."""
        s, platform, here = self.s, pair.platform, str(ctx.partition)
        end = interval_end(pair.epoch, s.assemble_every_s)
        stamp = _stamp(end)
        batch = ctx.records.get("batch", platform, here, stamp) or {"pairs": [], "bytes": 0}
        held = pair.model_dump(mode="json")
        batch["pairs"].append(held)
        batch["bytes"] += len(orjson.dumps(held))
        if len(batch["pairs"]) >= s.pairs_per_batch or batch["bytes"] >= BATCH_BYTES:
            self._send(platform, here, stamp, batch, ctx)
        ctx.records.save("batch", platform, here, stamp, record=batch, until=end + self.keep_s)
        ctx.set_timer(ids.key(platform, here, stamp), end)

    @staticmethod
    def _send(platform: str, here: str, stamp: str, batch: dict, ctx: Context) -> None:
        """One batch out. Its id is its first pair's (each pair is in one batch only), so a pair
        that comes after its interval's batch left (input later than the lateness) makes a batch
        of another id, and the same pairs read again after a restart make the same one."""
        if not batch["pairs"]:
            return
        ctx.emit("water_army", StrongPairs(
            type="strong_pairs", event_id=f"strong-pairs/{stamp}/{batch['pairs'][0]['event_id']}", platform=platform,
            ts=datetime.fromtimestamp(float(stamp), timezone.utc),
            pairs=[StrongPair.model_validate(pair, strict=False) for pair in batch["pairs"]]))  # JSON in the state
        batch["pairs"], batch["bytes"] = [], 0

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        """Add one co-action to the pair. The objects of one occasion (this post) count once,
        at the best weight among them, if any of them is new to the pair: repetition must be
        over distinct objects."""
        s, t, me = self.s, event.epoch, event.account_id
        platform, a, b = ids.parts(key)
        other = b if a == me else a
        partner = next(p for p in event.partners if p[0] == other)
        rec = ctx.records.get("pair", platform, a, b) or {"w": 0.0, "t": t, "o": [], "strong": False}
        occ = rec.get("occ")
        if occ is None or occ["post"] != event.post_id:  # a new occasion
            occ = rec["occ"] = {"post": event.post_id, "best": 0.0, "added": 0.0, "new": False, "objs": [],
                                "posts": [], "aims": list(event.aims)}
        occ["best"] = max(occ["best"], event.weight)
        occ["objs"] = (occ["objs"] + [event.object])[-s.objects_per_pair:]
        if partner[2] not in occ["posts"]:
            occ["posts"] = (occ["posts"] + [partner[2]])[-s.posts_kept:]
        occ["aims"] = sorted(set(occ["aims"]) | set(partner[3] or ()))
        if event.object not in rec["o"]:
            occ["new"] = True
            rec["o"] = (rec["o"] + [event.object])[-s.objects_per_pair:]
        became = False
        if occ["new"] and occ["best"] > occ["added"]:
            rec["w"] = _decay(rec["w"], rec["t"], t, s.half_life_s) + occ["best"] - occ["added"]
            rec["t"], occ["added"] = t, occ["best"]
            if not rec["strong"] and rec["w"] >= s.min_pair_weight - 1e-9:  # decay leaves 1.9999... for 2
                card = partner[4]
                n_other = _decay(card["n"], card["t"], t, s.half_life_s)
                if rec["w"] >= s.min_overlap * math.sqrt(event.card["n"] * n_other):
                    rec["strong"] = became = True
        ctx.records.save("pair", platform, a, b, record=rec, until=t + self.keep_s)
        if became:
            self._hold(StrongPair(
                type="strong_pair", event_id=part_id(event.event_id, other), platform=platform, ts=event.ts,
                accounts=[me, other], objects=occ["objs"], posts=occ["posts"] + [event.post_id],
                flags=event.flags, aims=occ["aims"], cards={me: event.card, other: partner[4]}), ctx)
        return []


class WaterArmy:
    """Campaigns from strong pairs; raises ``water_army_campaign`` (see the module docstring).

    The pairs come in batches (``ArmyPairs``). The batches of one interval are taken together
    when event time reaches its end, and their pairs joined one by one in ``(ts, event_id)``
    order, each growth report falling between them at its own time, as a timer would: so the
    alerts are exactly those of taking each pair as it came, whatever the partition count
    (only a record reaching its expiry within the interval is gone at the pair's turn)."""

    name: ClassVar[str] = "water_army"
    raises: ClassVar[tuple[str, ...]] = ("water_army_campaign",)
    event_types: ClassVar[frozenset[str]] = frozenset()
    # from ArmyPairs only; ``strong_pair``: one pair, as stage topics carried them before batches
    receives: ClassVar[frozenset[str]] = frozenset({"strong_pairs", "strong_pair"})
    ordered: ClassVar[bool] = True

    def __init__(self, settings: WaterArmySettings | None = None) -> None:
        self.s = settings or WaterArmySettings()
        self.keep_s = 4 * self.s.half_life_s  # accounts and campaigns: gone after four half-lives

    def keys(self, event: AnyEvent) -> list[str]:
        return [event.platform]

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        """Keep a batch until its interval's end (``ts``), when every partition's batch of it is in."""
        if isinstance(event, StrongPairs):
            pairs, end = event.pairs, event.epoch
        elif isinstance(event, StrongPair):  # joins its interval's batches
            pairs, end = [event], interval_end(event.epoch, self.s.assemble_every_s)
        else:
            raise TypeError(f"campaigns take strong pairs, got {type(event).__name__}")
        platform = event.platform
        stamp = _stamp(end)
        held = [[p.epoch, p.event_id, p.accounts, p.objects, p.posts, p.flags, p.aims, p.cards] for p in pairs]
        ctx.records.save("batch", platform, stamp, event.event_id, record={"pairs": held}, until=end + self.keep_s)
        index = ctx.records.get("batches", platform, stamp) or {"ids": []}
        index["ids"].append(event.event_id)
        ctx.records.save("batches", platform, stamp, record=index, until=end + self.keep_s)
        ctx.set_timer(ids.key(platform, "batch", stamp), end)
        return []

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        parts = ids.parts(key)
        if len(parts) == 2:  # a campaign's growth report, set before batches (a state from then)
            return self._legacy_report(*parts, ctx)
        platform, _batch, stamp = parts
        index = ctx.records.get("batches", platform, stamp)
        pairs: list[list] = []
        for batch_id in index["ids"] if index else ():
            batch = ctx.records.get("batch", platform, stamp, batch_id)
            if batch is not None:
                pairs += batch["pairs"]
                ctx.records.delete("batch", platform, stamp, batch_id)
        if index is not None:
            ctx.records.delete("batches", platform, stamp)
        pairs.sort(key=lambda p: (p[0], p[1]))  # the order the engine hands single pairs over in
        return self._assemble(platform, float(stamp), pairs, ctx)

    def _assemble(self, platform: str, end: float, pairs: list[list], ctx: Context) -> list[Alert]:
        """Join the interval's pairs in order; a growth report due before a pair goes first (a pair
        at a report's very time goes before it, as an event at a timer's time does)."""
        agenda = ctx.records.get("agenda", platform) or {"due": {}}
        due: dict[str, float] = agenda["due"]  # campaign -> when its growth is reported
        alerts: list[Alert] = []
        i = 0
        while True:
            upcoming = pairs[i][0] if i < len(pairs) else math.inf
            if due:  # the earliest report, ties in the order of the timer keys they once were
                at, _key, cid = min((at, ids.key(platform, cid), cid) for cid, at in due.items())
                if at <= end and at < upcoming:
                    del due[cid]
                    alerts += self._due_report(platform, cid, ctx)
                    continue
            if i == len(pairs):
                break
            t, _id, (me, other), objs, posts, flags, aims, cards = pairs[i]
            i += 1
            for account, card in sorted(cards.items()):  # the members' latest figures, for the report
                known = ctx.records.get("account", platform, account)
                if known is None or known["t"] <= card["t"]:
                    ctx.records.save("account", platform, account, record=dict(card), until=t + self.keep_s)
            alerts += self._join(platform, me, other, t, objs, posts, flags, ctx, aims, due, end)
        self._save_agenda(platform, agenda, ctx)
        return alerts

    def _save_agenda(self, platform: str, agenda: dict, ctx: Context) -> None:
        if agenda["due"]:
            ctx.records.save("agenda", platform, record=agenda, until=max(agenda["due"].values()) + self.keep_s)
        elif "until" in agenda:
            ctx.records.delete("agenda", platform)

    def _schedule(self, platform: str, cid: str, at: float, due: dict[str, float], after: float,
                  ctx: Context) -> None:
        """A growth report of ``cid`` at ``at`` into ``due``; its interval's end comes back for it
        when that is after ``after`` (the interval being assembled)."""
        due[cid] = at
        end = interval_end(at, self.s.assemble_every_s)
        if end > after:
            ctx.set_timer(ids.key(platform, "batch", _stamp(end)), end)

    def _legacy_report(self, platform: str, cid: str, ctx: Context) -> list[Alert]:
        """A growth report's timer from before batches, due now: pairs earlier than it in its
        interval are still to be joined, so it joins that interval's agenda instead. At the
        interval's very end the interval was assembled already (its timer's key sorts first)."""
        camp = ctx.records.get("campaign", platform, cid)
        if camp is None:
            return []
        at = camp.get("next", camp["t"])
        if interval_end(at, self.s.assemble_every_s) <= at:
            return self._due_report(platform, cid, ctx)
        agenda = ctx.records.get("agenda", platform) or {"due": {}}
        self._schedule(platform, cid, min(at, agenda["due"].get(cid, at)), agenda["due"], at, ctx)
        self._save_agenda(platform, agenda, ctx)
        return []

    def _due_report(self, platform: str, cid: str, ctx: Context) -> list[Alert]:
        camp = ctx.records.get("campaign", platform, cid)
        if camp is None or camp.get("into") or len(camp["members"]) == camp["reported"]:
            return []
        return [self._report(platform, cid, camp, camp["t"], ctx)]

    def _join(self, platform: str, me: str, other: str, t: float, objs: list[str], posts: list[str],
              flags: list[str], ctx: Context, aims: list[str], due: dict[str, float], end: float) -> list[Alert]:
        """One strong pair into the campaigns; a grown campaign's report goes into ``due``
        (:meth:`_schedule`; ``end``: the interval being assembled)."""
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
        self._schedule(platform, cid, camp.get("next", t), due, end, ctx)
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
