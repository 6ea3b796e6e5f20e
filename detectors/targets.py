"""Targets under attack: early warning when a person is mobbed (2024 Provisions Art. 13).

Keyed by target id, so one person's attackers meet in one place whatever platform they use,
and ordered. Over a sliding ``window_s`` it counts, per target:

* attackers: distinct accounts posting harmful content about the target, harmful meaning a
  platform label (insult, defamation, doxxing, sexual_rumor, threat, incitement) or, for
  unlabelled text, Stormwatch's own classifier at ``classifier_confidence`` or more;
* reports about the target, de-duplicated by (reporter, item), their surge against the
  target's own decaying baseline, and whether the target reported it themself; a report that
  names only a post reaches the post's targets through :class:`PostTargets`;
* the scene: threads (the post answered), hashtags, platforms.

``violence_surge`` fires when attackers reach ``min_attackers`` or reports surge, with half the
thresholds for minors and persons with disabilities, and is re-reported as attackers double.
Ordinary criticism of a public figure by many accounts, with no harmful labels, no confident
classifier verdict and no reports, raises nothing. Public-prosecution factors (Criminal Law
Art. 246(2) with the 2023 Opinions: ordinary people attacked by mass malicious comments;
several victims or repeated dissemination, i.e. harmful posts that attack other persons too or
an account posting ``repeat_posts`` of them; organised spread over several platforms) are named
in ``legal_refs`` with their items of Opinions Art. 12. Several victims are seen within posts (a
post naming several targets); one account attacking two persons in separate posts is not linked yet.

Organisation is seen in the target's own window: ``coordinated_accounts`` distinct attackers
posting near-identical text (one MinHash LSH band) make the ``water_army`` aggravation, and only
such a text posted on two platforms or more makes ``organised_across_platforms`` (harmful posts
on two platforms alone are not evidence of organisation). The water-army detector's campaigns are
not used: they live in the platform-keyed stage's state, and reaching this stage would need a new
internal event type on the stage topics. ``provider_organized`` needs a platform-run account that
started the wave (its harmful post came with no other attacker in the window), not one of many.

Platforms that do not trust each other (docs/CONTRACT.md, Tenancy): while a target's record holds
one platform's events it is that platform's own, as it always was. Once another platform's event
names the target, each platform's part becomes a record of its own (``target_part``), fed only
that platform's events: its alerts (whether and when, versions, thresholds, severity, aggravating,
figures, evidence) are those it would get alone, and of the other platforms it learns only how
many are involved (``evidence.cross_platform``). Reports count for the platform that sent them.
The whole record goes on for the regulator: with harmful posts or reports from two platforms or
more, its finding is raised as ``platform: "*"``, ``audience: "regulator"``, versions of its own.
"""

from __future__ import annotations

import math
from typing import ClassVar

import orjson
from pydantic import BaseModel, Field

from detectors import roles
from detectors.abuse import AbuseClassifier
from detectors.text import text_bands
from events import Alert, AnyEvent, Context, Post, Report, Target, keys as ids, raise_alert
from events.alerts import REGULATOR, alert_id

TARGET_FIELDS = frozenset(Target.model_fields)
HARMFUL = {"insult", "defamation", "doxxing", "sexual_rumor", "threat", "incitement"}
SEVERE = {"doxxing", "threat", "sexual_rumor"}
EARLY_WARNING = "Provisions on the Governance of Online Violence Information (2024) Art. 13"
PUBLIC_PROSECUTION = ["Criminal Law Art. 246(2)", "Opinions 法发〔2023〕14号 Art. 12 (public prosecution of online "
                      "insult and defamation: 侵害对象, 行为方式, 信息传播范围)"]
# Each factor is one listed case of Opinions Art. 12 (its items (2)-(4)).
FACTOR_REFS = {"ordinary_person_mass_malicious_comments": "Opinions 法发〔2023〕14号 Art. 12(2)",
               "several_victims_or_repeated_dissemination": "Opinions 法发〔2023〕14号 Art. 12(3)",
               "organised_across_platforms": "Opinions 法发〔2023〕14号 Art. 12(4)"}
TEXT_ROWS = 4  # rows per LSH band: the water-army detector's default (near-identical texts share a band)
MAX_TEXT_BANDS = 256  # LSH bands a target's record keeps (the most recently used)


class TargetSettings(BaseModel):
    shadow: bool = Field(False, description="Mark alerts as shadow (not delivered).")
    window_s: float = Field(3600, description="Sliding window for attackers and reports.")
    min_attackers: int = Field(10, description="Distinct attacking accounts in the window that make a surge.")
    min_reports: int = Field(10, description="Reports in the window that can make a surge...")
    surge_factor: float = Field(3.0, description="...when also this many times the target's own baseline.")
    baseline_half_life_s: float = Field(7 * 86400, description="Half-life of the report baseline.")
    classifier_confidence: float = Field(0.8, description="Unlabelled text counts as harmful at this confidence.")
    mass_comments: int = Field(50, description="Attackers that make 'mass malicious comments' (public prosecution).")
    repeat_posts: int = Field(3, description="Harmful posts about the target by one account that make 'repeated "
                              "dissemination' (public prosecution).")
    link_reports_s: float = Field(7 * 86400, description="A report naming only a post reaches the post's targets "
                                  "if the post (with its targets) came this recently.")
    max_scene: int = Field(200, ge=20, description="Threads and hashtags a target's record keeps, each (the most "
                           "recently seen): the record lives as long as attacks go on.")
    max_victims: int = Field(50, ge=1, description="Other persons named with the target in harmful posts that "
                             "its record keeps (the newest): N targets in one post would otherwise store N-1 each.")
    coordinated_accounts: int = Field(5, ge=2, description="Distinct attackers posting near-identical harmful text "
                                      "about the target within the window that show an organised attack: the "
                                      "water_army aggravation; on two platforms or more, organisation across them.")


class PostTargets:
    """Ties a report that names only a post to the persons that post attacks.

    A platform's report usually says "this post", not whom it is about; the post said that.
    Keyed by platform and post, so it sees a post before the reports about it (ordered); it
    remembers the targets of posts that name any for ``link_reports_s`` and hands each such
    report on to :class:`Targets` with the post's targets filled in (re-keyed by target).
    """

    name: ClassVar[str] = "post_targets"
    raises: ClassVar[tuple[str, ...]] = ()  # it only re-keys reports to the targets stage
    event_types: ClassVar[frozenset[str]] = frozenset({"post", "report"})
    ordered: ClassVar[bool] = True
    emits: ClassVar[frozenset[str]] = frozenset({"targets"})
    stage: ClassVar[str] = "posts"  # keyed by platform and post, like OrderWatch

    def __init__(self, settings: TargetSettings | None = None) -> None:
        self.s = settings or TargetSettings()

    def keys(self, event: AnyEvent) -> list[str]:
        names_targets = isinstance(event, Post) and event.targets
        needs_them = isinstance(event, Report) and event.post_id is not None and not event.targets
        return [ids.key(event.platform, event.post_id)] if names_targets or needs_them else []

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        t = event.epoch
        if isinstance(event, Post):
            # The contract's fields only: a target's unknown extras (any size, integers past
            # 64 bits that a Faust table cannot write) stay out of state.
            targets = [tg.model_dump(mode="json", include=TARGET_FIELDS) for tg in event.targets]
            ctx.records.save("post", event.platform, event.post_id, record={"targets": targets},
                             until=t + self.s.link_reports_s)
            return []
        known = ctx.records.get("post", event.platform, event.post_id)
        if known is not None:
            targets = [Target.model_validate(tg) for tg in known["targets"]]
            ctx.emit("targets", event.model_copy(update={"targets": targets}))
        return []


class Targets:
    """Raises ``violence_surge``; see the module docstring."""

    name: ClassVar[str] = "targets"
    raises: ClassVar[tuple[str, ...]] = ("violence_surge",)
    event_types: ClassVar[frozenset[str]] = frozenset({"post", "report"})
    ordered: ClassVar[bool] = True
    # A target's whole record takes every platform's events in one event-time order, so this
    # stage goes by the earliest platform's time (streams.engine): a platform whose clock runs
    # ahead moves nothing here; one that lags delays this stage's alerts, never changes them.
    spans_platforms: ClassVar[bool] = True

    def __init__(self, settings: TargetSettings | None = None, classifier: AbuseClassifier | None = None) -> None:
        self.s = settings or TargetSettings()
        self.classifier = classifier or AbuseClassifier.load()

    def keys(self, event: AnyEvent) -> list[str]:
        targets = getattr(event, "targets", None)
        return sorted({t.id for t in targets}) if targets else []  # most posts name no target

    def on_timer(self, key: str, ctx: Context) -> list[Alert]:
        return []

    def on_event(self, event: AnyEvent, key: str, ctx: Context) -> list[Alert]:
        t, s, platform = event.epoch, self.s, event.platform
        until = t + s.window_s * 24
        verdict = self._verdict(event)  # once, whichever records take the event
        rec = ctx.records.get("target", key)
        if rec is None:
            rec = _new_record(t, platform)
        tenant = rec.get("tenant") or _tenant(rec, platform)
        if not rec.get("split") and (tenant != platform or len(_involved(rec)) > 1):
            self._split(key, rec, tenant, ctx)
        if not rec.get("split"):  # one platform's events only: the record is that platform's own
            rec["tenant"] = tenant
            self._take(key, rec, event, t, verdict)
            alerts = self._judge(key, rec, t, tenant)
            ctx.records.save("target", key, record=rec, until=until)
            return alerts
        # Several platforms: each platform's part is a record of its own, fed only its own events,
        # exactly the record it would have alone; its alert depends on nothing else (of the others
        # it learns only how many are involved). The whole record is the regulator's.
        own = ctx.records.get("target_part", key, platform) or _new_record(t)
        self._take(key, own, event, t, verdict)
        self._take(key, rec, event, t, verdict)
        involved = _involved(rec)
        alerts, cross = [], None
        if len(involved) >= 2:
            alerts = self._judge(key, rec, t, "*", involved)
            cross = {"alert_id": alert_id("violence_surge", "target", key, "", "*", REGULATOR),
                     "platforms": len(involved)}
        alerts += self._judge(key, own, t, platform, cross=cross)
        ctx.records.save("target_part", key, platform, record=own, until=until)
        ctx.records.save("target", key, record=rec, until=until)
        return alerts

    def _split(self, key: str, rec: dict, tenant: str, ctx: Context) -> None:
        """A second platform's event reaches a target's record: from now on each platform's part
        is a record of its own. Until now the record held only ``tenant``'s events, so it is
        exactly that platform's part; the whole goes on as the regulator's, whose cross-platform
        alert is a new finding (its doubling counts from its own first version)."""
        if len(_involved(rec)) <= 1:
            own = orjson.loads(orjson.dumps({k: v for k, v in rec.items() if k not in ("until", "tenant")}))
            ctx.records.save("target_part", key, tenant, record=own, until=rec.get("until", rec["base_t"]))
            rec["fired"], rec["reported_attackers"] = [], 0
        else:  # a record kept before parts existed, already mixed: parts start afresh, versions go on
            for platform in _involved(rec):
                own = _new_record(rec["base_t"])
                own["alerts"] = dict(rec["alerts"])
                ctx.records.save("target_part", key, platform, record=own, until=rec.get("until", rec["base_t"]))
        rec["split"] = True
        rec.pop("tenant", None)

    def _verdict(self, event: AnyEvent) -> float | None:
        """Stormwatch's classifier on an unlabelled harmful-candidate post (None: not asked)."""
        if isinstance(event, Post) and not event.labels and event.text:
            return self.classifier.probability(event.text)
        return None

    def _take(self, key: str, rec: dict, event: AnyEvent, t: float, verdict: float | None) -> None:
        """One event into a target's record (the whole one, or one platform's part)."""
        s = self.s
        target = next(tg for tg in event.targets if tg.id == key)
        for flag in ("minor", "disabled", "public_figure"):
            rec["flags"][flag] = rec["flags"].get(flag, False) or getattr(target, flag)
        horizon = t - s.window_s
        if isinstance(event, Post):
            self._post(key, rec, event, t, verdict)
        elif isinstance(event, Report):
            item = f"post:{event.post_id}" if event.post_id else f"account:{event.account_id}" if event.account_id else key
            # the same reporter, item: once (ids are a platform's own: scoped by it)
            rec["reports"].setdefault(ids.key(event.platform, event.reporter_id, item), t)
            rec["self"] = rec["self"] or event.reporter_is_target
        # The windows are in time order (dicts keep insertion order): drop what left them.
        _drop_older(rec["attackers"], horizon, lambda v: v[0])
        _drop_older(rec["victims"], horizon, lambda v: v)
        posts = rec["posts"]
        while posts and posts[0][0] < horizon:
            posts.pop(0)
        del posts[:-200]
        # Reports leaving the window join a decaying sum; its rate, times the window, is the
        # target's usual number of reports per window (the baseline a surge is measured against).
        aged = _drop_older(rec["reports"], horizon, lambda v: v)
        rec["past"] = rec["past"] * math.exp2(-(t - rec["base_t"]) / s.baseline_half_life_s) + aged
        rec["base_t"] = t

    def _post(self, key: str, rec: dict, post: Post, t: float, p: float | None) -> None:
        """``p``: the classifier's probability (:meth:`_verdict`), None for a post it was not asked about."""
        labels = HARMFUL & set(post.labels)
        verdict = None
        if p is not None and p >= self.s.classifier_confidence:
            verdict = round(p, 3)
            rec["classified"] += 1
            rec.setdefault("verdicts", []).append(
                {"post_id": post.post_id, "label": "offensive", "confidence": verdict, "source": "stormwatch",
                 "platform": post.platform})
            rec["verdicts"] = rec["verdicts"][-10:]
        if not labels and verdict is None:
            return
        # [latest ts, platform, harmful posts about the target with no gap longer than the window,
        # account]; keyed by platform and account: two platforms' "u1" are two people
        attacker = ids.key(post.platform, post.account_id)
        # The first harmful post of a wave: no attacker (itself included) posted within the window.
        newest = rec["attackers"][next(reversed(rec["attackers"]))][0] if rec["attackers"] else -math.inf
        initiates = newest < t - self.s.window_s
        before = rec["attackers"].pop(attacker, None)  # re-inserted last: the dict stays in time order
        first = (before[4] if len(before) > 4 else before[0]) if before else t  # the first in the window (roles)
        rec["attackers"][attacker] = [t, post.platform, (before[2] if before else 0) + 1, post.account_id, first]
        roles.note_attack(rec, attacker, t)
        victims = rec["victims"]
        others = [other.id for other in post.targets if other.id != key]  # the same post attacks them too
        for other in others[-self.s.max_victims:]:
            victim = ids.key(post.platform, other)
            victims.pop(victim, None)
            victims[victim] = t
        while len(victims) > self.s.max_victims:  # the oldest go first: the dict is in time order
            del victims[next(iter(victims))]
        rec["posts"].append([t, post.post_id, post.platform])
        for label in labels or {"stormwatch_offensive"}:
            counted = ids.key(post.platform, label)
            rec["labels"][counted] = rec["labels"].get(counted, 0) + 1
        scene = rec["scene"]
        for kind, value in (("platform", post.platform), ("thread", post.parent_id),
                            *(("hashtag", h) for h in post.hashtags)):
            if value:
                seen = scene.setdefault(kind, {})
                where = value if kind == "platform" else ids.key(post.platform, value)
                seen[where] = seen.pop(where, 0) + 1  # re-inserted last: the newest are at the end
                if kind != "platform" and len(seen) > self.s.max_scene:
                    del seen[next(iter(seen))]
        # provider_organized: a platform-run account that started the wave (发起), not one of many
        for flag, present in (("sexual_topic", "sexual_rumor" in labels), ("deep_synthesis", post.synthetic),
                              ("provider_organized", initiates and bool(post.account and post.account.platform_operated))):
            if present:
                rec["flags"][flag] = True
        found = text_bands(post.text, TEXT_ROWS) if post.text else ()
        if found:  # near-identical texts: one LSH band of the MinHash signature
            texts = rec.setdefault("texts", {})
            # The largest clusters seen, [any, on two platforms or more], kept (like the other
            # circumstances) while the record lives: later texts may push their bands out.
            best = rec.setdefault("coordinated", [0, 0])
            for band in found:
                posted = texts.pop(band, {})  # re-inserted last: the dict stays in time order
                posted.pop(attacker, None)
                _drop_older(posted, t - self.s.window_s, lambda v: v)
                posted[attacker] = t
                while len(posted) > max(50, 2 * self.s.coordinated_accounts):  # enough to count to the figure
                    del posted[next(iter(posted))]
                texts[band] = posted
                best[0] = max(best[0], len(posted))
                if len({ids.parts(a)[0] for a in posted}) >= 2:
                    best[1] = max(best[1], len(posted))
            while len(texts) > MAX_TEXT_BANDS:
                del texts[next(iter(texts))]

    def _judge(self, key: str, rec: dict, t: float, platform: str, involved: list[str] | None = None,
               cross: dict | None = None) -> list[Alert]:
        """The next ``violence_surge`` of a record, if its finding is new or has grown: ``platform``'s
        own (its record, and ``cross``, the regulator's alert and how many platforms, when the attack
        spans several), or the regulator's (``platform`` "*", the whole record, ``involved``)."""
        s = self.s
        baseline = rec["past"] * s.window_s / (s.baseline_half_life_s / math.log(2))
        vulnerable = rec["flags"].get("minor") or rec["flags"].get("disabled")
        scale = 0.5 if vulnerable else 1.0
        attackers, reports = len(rec["attackers"]), len(rec["reports"])
        by_attackers = attackers >= math.ceil(s.min_attackers * scale)
        by_reports = (reports >= math.ceil(s.min_reports * scale)
                      and reports >= s.surge_factor * max(baseline, 1.0))
        if not (by_attackers or by_reports):
            return []
        platforms = sorted(rec["scene"].get("platform", {}))
        factors = []
        if not rec["flags"].get("public_figure") and attackers >= s.mass_comments:
            factors.append("ordinary_person_mass_malicious_comments")
        repeaters = {a: v[2] for a, v in rec["attackers"].items() if v[2] >= s.repeat_posts}
        if repeaters or rec["victims"]:
            factors.append("several_victims_or_repeated_dissemination")
        # Coordination: the most attackers that posted one near-identical text in the window.
        # Enough of them is an organised attack (water_army); on several platforms, the
        # evidence that the attack across platforms is organised (not just on two platforms).
        best = rec.get("coordinated", [0, 0])
        coordinated = best[0] >= s.coordinated_accounts
        if len(platforms) >= 2 and best[1] >= s.coordinated_accounts:
            factors.append("organised_across_platforms")
        # A new version when the finding grows: attackers double, reports start to surge, a
        # public-prosecution factor appears, an organised attack shows, or the target reports it.
        findings = ([f"factor:{f}" for f in factors] + (["reports"] if by_reports else [])
                    + (["self"] if rec["self"] else []) + (["water_army"] if coordinated else []))
        new = [f for f in findings if f not in rec["fired"]]
        if rec["reported_attackers"] and attackers < 2 * rec["reported_attackers"] and not new:
            return []
        rec["fired"] += new
        rec["reported_attackers"] = max(attackers, 1)
        refs = [EARLY_WARNING] + (PUBLIC_PROSECUTION + [FACTOR_REFS[f] for f in factors] if factors else [])
        aggravating = [a for a, present in (
            ("minor_target", rec["flags"].get("minor")), ("disabled_target", rec["flags"].get("disabled")),
            ("water_army", coordinated),
            ("sexual_topic", rec["flags"].get("sexual_topic")), ("deep_synthesis", rec["flags"].get("deep_synthesis")),
            ("provider_organized", rec["flags"].get("provider_organized"))) if present]
        labels = _by_label(rec["labels"], None)
        severe = bool(aggravating) or bool(SEVERE & set(labels)) or bool(factors)
        score = round(1 - (1 - min(1.0, attackers / (2 * s.min_attackers))) * (1 - min(1.0, reports / (2 * s.min_reports)))
                      * (0.7 if SEVERE & set(labels) else 1.0), 3)
        common = {"severity": "critical" if severe else "warning", "legal_refs": refs, "aggravating": aggravating}
        figures = {"score": score, "report_baseline": round(baseline, 3), "reported_by_target": rec["self"],
                   "public_prosecution_factors": factors,
                   "coordinated_posting": {"accounts": best[0], "across_platforms": best[1],
                                           "limit": s.coordinated_accounts}}
        # Summaries travel further than evidence (chat channels, tickets, Alertmanager annotations):
        # they say "the target"; its id is in subject and evidence, where access is controlled.
        summary = (f"The target is under a concentrated attack: {attackers} accounts, {reports} reports in the last "
                   f"{s.window_s / 3600:g} h" + (f" on {len(platforms)} platforms" if len(platforms) > 1 else "")
                   + (f"; {best[0]} of them posted near-identical text (candidate organised attack)"
                      if coordinated else "")
                   + (f"; candidate public-prosecution factors: {', '.join(factors)}." if factors else "."))
        # The accounts this alert names (as its evidence lists them): harmful posts after it repeat.
        roles.note_named(rec, sorted(rec["attackers"], key=lambda k: (rec["attackers"][k][3], k))[:200], t)
        if platform != "*":  # one platform's finding: its alert, as it always was
            if cross:
                figures["cross_platform"] = cross
            return [self._raise(key, rec, t, platform, "", summary, common, figures, repeaters)]
        # Across platforms: the regulator gets the whole finding (each platform gets its own
        # part, judged on its own record).
        return [self._raise(key, rec, t, "*", REGULATOR, summary, common, figures, repeaters, involved)]

    def _raise(self, key: str, rec: dict, t: float, platform: str, audience: str, summary: str, common: dict,
               figures: dict, repeaters: dict, involved: list[str] | None = None) -> Alert:
        """One ``violence_surge`` from ``rec`` (the whole record, or one platform's part of it)."""
        attackers = rec["attackers"]
        return raise_alert(
            rec["alerts"], kind="violence_surge", subject=("target", key), ts=t,
            platform=platform, audience=audience, summary=summary, **common,
            evidence={"target_id": key, "accounts": sorted(v[3] for v in attackers.values())[:200],
                      "account_count": len(attackers), "reports": len(rec["reports"]),
                      "labels": _by_label(rec["labels"], None if audience else platform),
                      "platforms": involved or sorted(rec["scene"].get("platform", {})),
                      "threads": _ids(rec["scene"].get("thread", {}))[:20],
                      "hashtags": _ids(rec["scene"].get("hashtag", {}))[:20],
                      "classifier_flagged": rec["classified"],
                      "classifier_verdicts": rec.get("verdicts", []),
                      "reports_by_item": dict(sorted(_count_items(rec["reports"]).items(), key=lambda kv: -kv[1])[:10]),
                      "repeated_by": dict(sorted(((attackers[a][3], n) for a, n in repeaters.items()),
                                                 key=lambda kv: (-kv[1], kv[0]))[:10]),
                      "other_victims": _ids(rec["victims"])[:20],
                      "posts": [p[1] for p in rec["posts"][-20:]],
                      "roles": roles.target(attackers, rec.get("named", {})), **figures},
            shadow=self.s.shadow)


def _new_record(t: float, tenant: str | None = None) -> dict:
    """A target's record; ``tenant``: the one platform whose events it holds (until another's come)."""
    return {"attackers": {}, "victims": {}, "posts": [], "reports": {}, "past": 0.0, "base_t": t, "flags": {},
            "labels": {}, "scene": {}, "fired": [], "reported_attackers": 0, "alerts": {}, "self": False,
            "classified": 0, **({"tenant": tenant} if tenant else {})}


def _involved(rec: dict) -> list[str]:
    """The platforms a target's record has harmful posts or reports (in the window) from."""
    return sorted(set(rec["scene"].get("platform", {})) | {ids.parts(k)[0] for k in rec["reports"]})


def _tenant(rec: dict, platform: str) -> str:
    """The platform of a record kept before records named it: of its posts or reports, else ``platform``."""
    involved = _involved(rec)
    return involved[0] if involved else rec["posts"][0][2] if rec["posts"] else platform


def _by_label(labels: dict[str, int], platform: str | None) -> dict[str, int]:
    """Harmful posts per label, of every platform (None) or of one."""
    out: dict[str, int] = {}
    for counted, n in labels.items():
        where, label = ids.parts(counted)
        if platform is None or where == platform:
            out[label] = out.get(label, 0) + n
    return dict(sorted(out.items()))


def _ids(keyed: dict) -> list[str]:
    """The ids of a (platform, id)-keyed dict, sorted."""
    return sorted({ids.parts(k)[1] for k in keyed})


def _drop_older(window: dict, horizon: float, time_of) -> int:
    """Remove entries older than ``horizon`` from the front of a time-ordered dict; how many."""
    dropped = 0
    while window and time_of(next(iter(window.values()))) < horizon:
        del window[next(iter(window))]
        dropped += 1
    return dropped


def _count_items(reports: dict[str, float]) -> dict[str, int]:
    """Reports per reported item (post or account), from the de-duplicated (platform, reporter,
    item) keys."""
    counts: dict[str, int] = {}
    for key in reports:
        item = ids.parts(key)[2]
        counts[item] = counts.get(item, 0) + 1
    return counts
