"""Cascades: legal figures crossed exactly once at the right event, forecasts, illegal marketing."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from compliance.law import BY_ID, TABLE, LawSettings
from detectors import seismic
from detectors.cascades import CascadeSettings, cascade_detectors
from events import decode, format_ts
from streams.engine import Engine
from tests.support.scenarios import T0


BY_ROOT = [False]  # set by the by_root fixture: every test runs with cascades keyed both ways


@pytest.fixture(autouse=True, params=["by_platform", "by_root"])
def by_root(request):
    BY_ROOT[0] = request.param == "by_root"
    yield
    BY_ROOT[0] = False


class Feed:
    """A platform's events. Keyed by root (``BY_ROOT``), every post with a parent carries its
    ``root_id``, as the platforms that opt in promise; keyed by platform, none does."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.n = 0
        self.roots: dict[str, str] = {}

    def _add(self, second: float, event: dict) -> str:
        self.n += 1
        event_id = f"e{self.n:06d}"
        self.events.append({"event_id": event_id, "platform": "weibo", "ts": format_ts(T0 + second), **event})
        return event_id

    def post(self, second: float, pid: str, author: str = "author", kind: str = "original", parent=None, **extra):
        root = self.roots.get(parent, parent) if parent is not None else None
        if root is not None and root != pid:
            self.roots[pid] = root
        else:
            self.roots.pop(pid, None)
        if BY_ROOT[0] and root is not None and "root_id" not in extra:
            extra["root_id"] = root
        return self._add(second, {"type": "post", "post_id": pid, "account_id": author, "kind": kind,
                                  "parent_id": parent, **extra})

    def views(self, second: float, pid: str, views: int = 0, reposts: int = 0, reach: int = 0):
        return self._add(second, {"type": "engagement", "post_id": pid, "views": views, "reposts": reposts,
                                  "reach_accounts": reach})

    def report(self, second: float, rid: str, pid: str, category: str = "defamation"):
        return self._add(second, {"type": "report", "report_id": rid, "reporter_id": f"r-{rid}", "post_id": pid,
                                  "category": category})

    def run(self, law: LawSettings | None = None, settings: CascadeSettings | None = None,
            state: dict | None = None, end_s: float = 10 * 86400 * 400) -> list[dict]:
        keyed = {"root_ids_given": ["weibo"] if BY_ROOT[0] else []}
        settings = (settings or CascadeSettings()).model_copy(update=keyed)
        engine = Engine(cascade_detectors(settings, law), state_factory=None if state is None else
                        lambda name: state if name == "cascade_watch" else {})
        out = []
        for raw in self.events + [{"type": "tick", "ts": format_ts(T0 + end_s)}]:
            out.extend(a.model_dump() for a in engine.process(decode(orjson.dumps(raw), "t")))
        assert not engine.failures
        return out


def legal(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["kind"] == "legal_threshold"]


@pytest.mark.parametrize("last,fires", [(4_999, False), (5_000, True), (5_001, True)])
def test_views_figure_at_just_below_and_just_above(last: int, fires: bool) -> None:
    f = Feed()
    f.post(0, "p1", labels=["defamation"])
    f.views(60, "p1", views=3_000)
    crossing = f.views(120, "p1", views=last)
    f.views(180, "p1", views=last - 10)  # stale: lower than already seen, ignored
    f.views(240, "p1", views=last + 50)  # still above: no second alert
    alerts = legal(f.run())
    if not fires:  # 4,999 is below the figure; the later 5,049 crosses it, at its own event
        assert [(a["ts"], a["evidence"]["value"]) for a in alerts] == [(format_ts(T0 + 240), last + 50)]
        return
    assert [a["evidence"]["threshold"] for a in alerts] == ["defamation_views_5000"]
    assert alerts[0]["ts"] == format_ts(T0 + 120)  # the event that crossed, not later
    assert alerts[0]["evidence"]["value"] == last and alerts[0]["evidence"]["limit"] == 5_000
    assert alerts[0]["subject"] == {"type": "post", "id": "p1"} and alerts[0]["version"] == 1
    assert crossing


def test_reposts_figure_fires_at_the_500th_repost_once() -> None:
    f = Feed()
    f.post(0, "p1", labels=["defamation"])
    for n in range(1, 601):
        f.post(n, f"rp{n}", author=f"u{n}", kind="repost", parent="p1" if n % 2 else f"rp{n - 1}")
    alerts = legal(f.run())
    assert [a["evidence"]["threshold"] for a in alerts] == ["defamation_reposts_500"]
    assert alerts[0]["ts"] == format_ts(T0 + 500) and alerts[0]["evidence"]["value"] == 500


def test_reposts_499_is_silent_and_the_counter_can_cross_first() -> None:
    f = Feed()
    f.post(0, "p1", labels=["defamation"])
    for n in range(1, 500):
        f.post(n, f"rp{n}", author=f"u{n}", kind="repost", parent="p1")
    assert legal(f.run()) == []
    f.views(600, "p1", reposts=520)  # the platform's counter knows more reposts than we saw
    alerts = legal(f.run())
    assert [(a["evidence"]["threshold"], a["evidence"]["value"], a["ts"]) for a in alerts] == [
        ("defamation_reposts_500", 520, format_ts(T0 + 600))]


def test_a_label_arriving_late_fires_at_the_label() -> None:
    f = Feed()
    f.post(0, "p1")
    f.views(60, "p1", views=8_000)
    f.report(90, "rep1", "p1")
    f.post(300, "p1", labels=["defamation"])  # the platform re-sends the post with its verdict
    alerts = legal(f.run())
    assert [(a["evidence"]["threshold"], a["ts"]) for a in alerts] == [("defamation_views_5000", format_ts(T0 + 300))]
    assert alerts[0]["evidence"]["defamation_reports"] == 1


def test_reports_alone_do_not_make_an_item_defamatory() -> None:
    f = Feed()
    f.post(0, "p1")
    for r in range(20):
        f.report(10 + r, f"rep{r}", "p1")
    f.views(60, "p1", views=50_000, reposts=5_000)
    assert legal(f.run()) == []


def test_lawful_viral_posts_stay_silent() -> None:
    f = Feed()
    f.post(0, "p1", text="今天的比赛太精彩了")
    for n in range(1, 1201):
        f.post(n / 2, f"rp{n}", author=f"u{n}", kind="repost", parent="p1")
    f.views(700, "p1", views=200_000, reposts=1_500, reach=90_000)
    assert f.run() == []


def test_the_cumulative_rule_aggregates_one_authors_items_within_a_year() -> None:
    f = Feed()
    f.post(0, "p1", author="writer", labels=["defamation"])
    f.views(60, "p1", views=3_000)
    f.post(43_200, "p0", author="writer", labels=["defamation"])  # 多次: a third item
    f.post(86_400, "p2", author="writer", labels=["defamation"])
    f.views(86_460, "p2", views=1_999)
    crossing = 86_520
    f.views(crossing, "p2", views=2_000)  # 3,000 + 0 + 2,000 = 5,000
    alerts = legal(f.run())
    assert [a["subject"] for a in alerts] == [{"type": "account", "id": "writer"}]
    evidence = alerts[0]["evidence"]
    assert (evidence["threshold"], evidence["value"], evidence["posts"]) == (
        "defamation_cumulative_1y", 5_000, ["p0", "p1", "p2"])
    assert alerts[0]["ts"] == format_ts(T0 + crossing)


def test_multiple_times_means_three_items_by_default_and_is_configurable() -> None:
    """2013-21 Art. 4's 多次 is read as three or more: two items reaching the figure together
    are not aggregated (issue 16); a deployment may set it otherwise."""
    f = Feed()
    f.post(0, "p1", author="writer", labels=["defamation"])
    f.views(60, "p1", views=3_000)
    f.post(86_400, "p2", author="writer", labels=["defamation"])
    f.views(86_520, "p2", views=2_500)
    assert legal(f.run()) == []
    alerts = legal(f.run(law=LawSettings(figures={"defamation_repeat_3": 2})))
    assert [a["evidence"]["posts"] for a in alerts] == [["p1", "p2"]]


def test_items_older_than_a_year_do_not_aggregate() -> None:
    f = Feed()
    f.post(0, "p1", author="writer", labels=["defamation"])
    f.views(60, "p1", views=3_000)
    for n in (2, 3, 4):  # three items within a year of each other, 2,500 views together
        f.post(400 * 86_400 + n, f"p{n}", author="writer", labels=["defamation"])
    f.views(400 * 86_400 + 60, "p2", views=2_500)
    assert legal(f.run(settings=CascadeSettings(item_ttl_s=800 * 86_400))) == []  # p1 counted: 5,500


def test_root_is_resolved_from_the_parent_chain() -> None:
    f = Feed()
    f.post(0, "root", labels=["defamation"])
    f.post(1, "a", author="u1", kind="repost", parent="root")
    for n in range(2, 12):  # a chain of reposts of reposts, no root_id given
        f.post(n, f"c{n}", author=f"u{n}", kind="repost", parent="a" if n == 2 else f"c{n - 1}")
    alerts = legal(f.run(law=LawSettings(figures={"defamation_reposts_500": 11})))
    assert [(a["subject"]["id"], a["evidence"]["value"]) for a in alerts] == [("root", 11)]


def test_only_posts_that_are_not_their_own_root_leave_a_root_record() -> None:
    """No record means "the parent is the root", so originals (most posts) write none; a later
    version of a repost that makes it an original takes its record away."""
    from events.keys import parts

    f = Feed()
    f.post(0, "root", labels=["defamation"])
    f.post(1, "other")
    f.post(2, "a", author="u1", kind="repost", parent="root")
    f.post(3, "b", author="u2", kind="repost", parent="a")
    f.post(4, "moved", author="u3", kind="repost", parent="root")
    f.post(5, "moved", author="u3")  # its next version is an original
    f.post(6, "c", author="u4", kind="repost", parent="moved")
    state: dict = {}
    alerts = legal(f.run(law=LawSettings(figures={"defamation_reposts_500": 3}), state=state, end_s=60))
    assert [(a["subject"]["id"], a["evidence"]["value"]) for a in alerts] == [("root", 3)]  # a, b, moved; not c
    rooted = sorted(parts(k)[-1] for k in state if parts(k)[0] == "root")
    assert rooted == ([] if BY_ROOT[0] else ["a", "b", "c"])  # keyed by root, the platform names each root


def test_harmful_posts_growing_fast_raise_viral_spread_with_a_forecast() -> None:
    f = Feed()
    f.post(0, "p1", labels=["insult"], **{"account": {"followers": 800}})
    for n in range(1, 130):
        f.post(n * 3, f"rp{n}", author=f"u{n}", kind="repost", parent="p1")
    alerts = [a for a in f.run() if a["kind"] == "viral_spread"]
    assert len(alerts) == 1 and alerts[0]["evidence"]["reposts_in_window"] == 100
    assert set(alerts[0]["evidence"]["forecast"]) >= {"horizon_s", "views", "reposts"}


def marketing(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["kind"] == "illegal_marketing"]


PUBLIC = {"public_account": True}


@pytest.mark.parametrize("followers,fires", [(29_999, False), (30_000, True), (30_001, True)])
def test_one_public_account_with_30000_followers_pushing_harm_is_illegal_marketing(followers: int, fires: bool) -> None:
    f = Feed()
    f.post(0, "m0", author="pub", labels=["insult"], targets=[{"id": "victim"}],
           account={"followers": followers, **PUBLIC})
    f.post(60, "lawful", author="pub9", targets=[{"id": "victim"}], account={"followers": 90_000, **PUBLIC})
    alerts = marketing(f.run())
    assert len(alerts) == int(fires)
    if fires:
        [a] = alerts
        assert a["subject"] == {"type": "account", "id": "pub"} and a["ts"] == format_ts(T0)
        assert a["evidence"]["accounts"] == ["pub"] and a["evidence"]["target_id"] == "victim"
        assert a["evidence"]["grounds"] == ["marketing_followers_30000"] and a["evidence"]["followers"] == followers
        assert "Interpretation 2019-15 Art. 10(4) item 4" in a["legal_refs"] and "candidate" in a["summary"]


def test_unrelated_public_accounts_are_not_summed() -> None:
    """Issue 16, item 1: three unrelated public accounts of 10,000 followers each posting about
    one person raised illegal_marketing (30,000 summed); 情节严重 is measured per offender."""
    f = Feed()
    for k in range(3):
        f.post(k * 60, f"m{k}", author=f"pub{k}", labels=["insult"], targets=[{"id": "victim"}],
               account={"followers": 10_000, **PUBLIC})
        for r in range(700):  # 700 reposters each: 2,100 summed over the three accounts' posts
            f.post(k * 60 + 1 + r * 0.01, f"rp{k}-{r}", author=f"u{k}-{r}", kind="repost", parent=f"m{k}")
    assert marketing(f.run()) == []


@pytest.mark.parametrize("posts,fires", [(99, False), (100, True), (101, True)])
def test_one_account_pushing_100_posts_is_illegal_marketing(posts: int, fires: bool) -> None:
    f = Feed()
    for k in range(posts):  # about two persons: the offender's posts count together
        f.post(k * 60, f"m{k}", author="pub", labels=["insult"], targets=[{"id": "victim" if k % 3 else "other"}],
               account={"followers": 50, **PUBLIC})
        if k < 60:  # another account's posts about the same person do not add to them
            f.post(k * 60 + 1, f"x{k}", author="pub2", labels=["insult"], targets=[{"id": "victim"}],
                   account={"followers": 50, **PUBLIC})
    alerts = marketing(f.run())
    assert len(alerts) == int(fires)
    if fires:
        assert alerts[0]["ts"] == format_ts(T0 + 99 * 60) and alerts[0]["evidence"]["post_count"] == 100
        assert alerts[0]["evidence"]["grounds"] == ["marketing_posts_100"]
        assert alerts[0]["evidence"]["target_id"] == "victim" and alerts[0]["evidence"]["target_ids"] == ["victim", "other"]


@pytest.mark.parametrize("reach,fires", [(1_999, False), (2_000, True), (2_001, True)])
def test_accounts_reached_count_no_reader_twice(reach: int, fires: bool) -> None:
    """Issue 16, item 1: accounts reached were summed per post, so one reader of two posts
    counted twice. Readers are not named in events: the largest post's count is the figure
    (the sum is kept as the upper bound)."""
    f = Feed()
    for k in range(3):
        f.post(k * 60, f"m{k}", author="pub", labels=["insult"], targets=[{"id": "victim"}],
               account={"followers": 50, **PUBLIC})
        f.views(k * 60 + 30, f"m{k}", views=10, reach=1_500)  # 4,500 summed: no ground
    f.views(600, "m1", views=10, reach=reach)
    alerts = marketing(f.run())
    assert len(alerts) == int(fires)
    if fires:
        ev = alerts[0]["evidence"]
        assert ev["accounts_reached"] == reach and ev["accounts_reached_bound"] == "largest_post"
        assert ev["accounts_reached_sum"] == 3_000 + reach and ev["grounds"] == ["marketing_accounts_2000"]
        assert alerts[0]["ts"] == format_ts(T0 + 600)


def test_seismic_kernel_and_a_finite_forecast() -> None:
    for end in (100.0, 300.0, 5e3, 1e9):  # the kernel's mass up to s is 1 - ccdf(s)
        total, _ = seismic._int_phi(np.array([0.0]), np.array([end]))
        assert total[0] == pytest.approx(1 - seismic.ccdf(np.array([end]))[0], rel=1e-6)  # 7-digit constants
    s = np.array([seismic.S0 - 1e-6, seismic.S0 + 1e-6])
    left, right = seismic.ccdf(s)
    assert left == pytest.approx(right, rel=1e-5)
    times = np.array([0.0, 60, 120, 400, 900, 2000, 4000, 8000, 15000, 30000])
    followers = np.full(len(times), 100.0)
    forecasts = [seismic.predict(times, followers, t) for t in (40_000, 80_000, 200_000)]
    assert all(math.isfinite(x) for x in forecasts)
    # a cascade gone quiet: the forecast shrinks toward what was observed, never below it
    assert forecasts[0] >= forecasts[1] >= forecasts[2] >= len(times)
    assert forecasts[2] < len(times) * 1.2


def test_the_legal_table_names_a_source_for_every_figure_and_can_be_overridden() -> None:
    assert all(f.source and f.value > 0 for f in TABLE)
    assert {"defamation_views_5000", "defamation_reposts_500", "dissemination_clicks_50000",
            "repeat_refusal_2y", "marketing_posts_100"} <= set(BY_ID)
    law = LawSettings(figures={"defamation_views_5000": 6_000})
    assert law.limit("defamation_views_5000") == 6_000 and law.limit("defamation_reposts_500") == 500
    with pytest.raises(ValueError):
        LawSettings(figures={"no_such_rule": 1})


def test_a_threshold_alert_carries_every_aggravating_circumstance_its_post_shows() -> None:
    """Issue 16, item 5: a defamatory post about a minor and disabled target, made with generative
    AI by a platform-run account, crossed 5,000 views with ``aggravating: []``."""
    f = Feed()
    f.post(0, "p1", labels=["defamation"], targets=[{"id": "kid", "minor": True, "disabled": True}], synthetic=True,
           account={"followers": 10, "platform_operated": True})
    f.post(10, "plain", author="other", labels=["defamation"], targets=[{"id": "adult"}])
    f.views(60, "p1", views=5_000)
    f.views(61, "plain", views=5_000)
    alerts = {a["subject"]["id"]: a for a in legal(f.run())}
    assert alerts["p1"]["aggravating"] == ["deep_synthesis", "disabled_target", "minor_target", "provider_organized"]
    assert alerts["plain"]["aggravating"] == []


def test_findings_that_name_a_crime_say_they_are_candidates() -> None:
    """Issue 16, item 7: a regulator forwards these; none may read as a verdict."""
    f = Feed()
    for n, views in ((1, 2_000), (2, 2_000), (3, 1_000)):
        f.post(n * 100, f"p{n}", author="writer", labels=["defamation"])
        f.views(n * 100 + 50, f"p{n}", views=views)
    alerts = legal(f.run())
    assert alerts and all("candidate" in a["summary"] for a in alerts)


# -- keyed by root: one platform's cascades over many partitions ------------------------------------


def test_keyed_by_root_a_post_goes_to_each_item_it_counts_for() -> None:
    """A repost counts for its root and for the post it reposts (an item if labelled); an
    original or a labelled post is an item itself; a comment counts for its root only."""
    from events import keys as ids

    watch = cascade_detectors(CascadeSettings(root_ids_given=["weibo"]))[0]
    f = Feed()
    f.post(0, "root")
    f.post(1, "a", kind="repost", parent="root", root_id="root")
    f.post(2, "b", kind="repost", parent="a", root_id="root", labels=["defamation"])
    f.post(3, "c", kind="comment", parent="b", root_id="root")
    f.post(4, "d", kind="comment", parent="b", root_id="root", labels=["defamation"])
    f.views(5, "b", views=3)
    f.events.append({**f.events[0], "platform": "douyin", "event_id": "other"})
    got = [watch.keys(decode(orjson.dumps(e), "t")) for e in f.events]
    k = lambda *parts: ids.key(*parts)  # noqa: E731
    assert got == [[k("weibo", "root")], [k("weibo", "root")],
                   [k("weibo", "root"), k("weibo", "a"), k("weibo", "b")], [k("weibo", "root")],
                   [k("weibo", "root"), k("weibo", "d")], [k("weibo", "b")], [k("douyin")]]


def test_keyed_by_root_a_post_without_its_root_is_a_dead_letter_naming_the_field() -> None:
    """Following a chain of parents would need the platform's one partition again, so a platform
    that opts in must name the root; the rest of its stream and other platforms go on."""
    from streams.local import LocalPipeline
    from streams.partitioned import PartitionedPipeline
    from streams.settings import Settings

    lines = [orjson.dumps(e) for e in (
        {"type": "post", "event_id": "e1", "platform": "weibo", "ts": format_ts(T0), "post_id": "r",
         "account_id": "u", "kind": "original"},
        {"type": "post", "event_id": "e2", "platform": "weibo", "ts": format_ts(T0 + 1), "post_id": "x",
         "account_id": "v", "kind": "repost", "parent_id": "r"},
        {"type": "post", "event_id": "e3", "platform": "douyin", "ts": format_ts(T0 + 2), "post_id": "y",
         "account_id": "v", "kind": "repost", "parent_id": "r"},
        {"type": "post", "event_id": "e4", "platform": "weibo", "ts": format_ts(T0 + 3), "post_id": "z",
         "account_id": "w", "kind": "repost", "parent_id": "r", "root_id": "r"})]
    settings = Settings(cascades=CascadeSettings(root_ids_given=["weibo"]))
    for make in (lambda a, d: LocalPipeline(settings, a, d), lambda a, d: PartitionedPipeline(settings, 4, a, d)):
        letters: list = []
        pipeline = make(lambda a: None, letters.append)
        for n, line in enumerate(lines, 1):
            pipeline.feed(line, f"t:{n}")
        pipeline.finish()
        assert [(x.source, x.reason) for x in letters] == [("t:2", "invalid_field")]
        assert letters[0].error.startswith("post.root_id: required") and "'weibo'" in letters[0].error
        assert pipeline.events == 3


def test_a_finding_is_never_taken_from_the_input() -> None:
    """Findings travel only between the two cascades stages: sent as input, one is an unknown
    type, so no platform can raise (or re-version) a cascades alert by writing one."""
    finding = {"type": "cascade_finding", "event_id": "e1\x00p1", "platform": "weibo", "ts": format_ts(T0),
               "author": "u", "item": {"id": "p1", "t0": T0, "targets": [], "threshold": [], "viral": [], "roles": []}}
    letter = decode(orjson.dumps(finding), "t")
    assert letter.reason == "unknown_type" and "cascade_finding" in letter.error
    assert decode(orjson.dumps(finding), "stage", stage=True).type == "cascade_finding"


def test_a_findings_id_is_unambiguous_whatever_the_ids_hold() -> None:
    """Two events of one platform with crafted ids must not make one finding id (the author's
    seen-set would drop the second as a repeat), and a finding sorts right after its event."""
    from detectors.cascades import finding_id

    pairs = [("e", "x\x00y"), ("e\x00x", "y"), ("e\x00x\x001", "y"), ("e", "x\x00y\x001"), ("e\x00", "x"), ("e", "\x00x"),
             ("e\x000x", "1")]
    assert len({finding_id(e, 0, i) for e, i in pairs} | {finding_id(e, 1, i) for e, i in pairs}) == 2 * len(pairs)
    assert sorted(["e", "e0", finding_id("e", 2, "zz")]) == ["e", finding_id("e", 2, "zz"), "e0"]
    # one event's findings: the post itself, its root, its parent, whatever their ids
    assert sorted([finding_id("e", 2, "a"), finding_id("e", 1, "b"), finding_id("e", 0, "c")]) == [
        finding_id("e", 0, "c"), finding_id("e", 1, "b"), finding_id("e", 2, "a")]
    assert len(finding_id("e" * 256, 2, "p" * 256)) <= 520  # CascadeFinding's bound


def test_findings_of_one_event_reach_the_author_in_the_order_one_detector_took_them() -> None:
    """A defamatory repost by the author of the defamatory post it reposts is two items of one
    author: the repost itself first, then its root, as the single detector did, whatever the
    item ids (here the root's id sorts first)."""
    f = Feed()
    f.post(0, "a", author="u", labels=["defamation"])
    f.post(1, "m", author="u", labels=["defamation"])
    for n in range(200):
        f.post(2 + n, f"r{n:03d}", author=f"v{n}", kind="repost", parent="a")
    f.views(300, "z", reposts=300)
    f.post(301, "z", author="u", kind="repost", parent="a", labels=["defamation"])  # z: 300, a: 201 reposts
    alerts = legal(f.run(end_s=400))
    # z first: 300 + 200 (a before this repost) = 500; a first would make it 300 + 201
    assert [(a["subject"]["id"], a["evidence"]["threshold"], a["evidence"]["value"]) for a in alerts] == [
        ("u", "defamation_cumulative_1y", 500)]


def test_a_case_with_a_findings_id_hides_no_finding() -> None:
    """In the author's stage cases and findings share a seen-set: a case whose id is a
    finding's (an input may hold NULs), taken in the same second before the finding, must not
    hide it: both the views figure and the penalty's consequence are raised."""
    from detectors.cascades import finding_id
    from streams.partitioned import PartitionedPipeline
    from streams.settings import Settings

    f = Feed()
    f.post(0, "z", author="u", labels=["defamation"])
    f.events.append({"type": "engagement", "event_id": "e-views", "platform": "weibo", "ts": format_ts(T0 + 2),
                     "post_id": "z", "views": 6000})
    f.events.append({"type": "case", "event_id": finding_id("e-views", 0, "z"), "platform": "weibo",
                     "ts": format_ts(T0 + 2), "decided_at": format_ts(T0 - 10), "case_id": "k1",
                     "subject": {"type": "account", "id": "u"}, "action": "penalty", "conduct": "defamation"})
    f.events.append({"type": "tick", "ts": format_ts(T0 + 100)})  # past the allowed lateness
    alerts, letters = [], []
    keyed = Settings(cascades=CascadeSettings(root_ids_given=["weibo"] if BY_ROOT[0] else []))
    pipeline = PartitionedPipeline(keyed, 4, alerts.append, letters.append)
    for n, e in enumerate(f.events, 1):
        pipeline.feed(orjson.dumps(e), f"t:{n}")
    pipeline.finish()
    assert letters == []
    assert sorted(a.evidence["threshold"] for a in alerts) == ["defamation_after_penalty_2y", "defamation_views_5000"]


def test_an_item_remembers_at_most_a_hundred_targets() -> None:
    """A post names at most 100 targets; its versions could name thousands between them, and
    every finding about the item carries its targets, so the item keeps the first 100 (sorted)
    and so does each finding: a finding stays far below a stage record's 1 MiB."""
    from events.keys import parts

    f = Feed()
    for version in range(3):
        f.post(version, "z", author="u", labels=["defamation"],
               targets=[{"type": "person", "id": f"t{version}-{n:03d}"} for n in range(100)])
    state: dict = {}
    f.run(state=state, end_s=60)
    items = [rec for k, rec in state.items() if parts(k)[0] == "item"]
    assert [len(rec["targets"]) for rec in items] == [100]
    assert items[0]["targets"] == sorted(f"t{v}-{n:03d}" for v in range(3) for n in range(100))[:100]
    watch = cascade_detectors()[0]  # alone: what it hands on stays with the engine
    engine = Engine([watch])
    for raw in f.events + [{"type": "tick", "ts": format_ts(T0 + 60)}]:
        engine.process(decode(orjson.dumps(raw), "t"))
    findings = [event for _name, event in engine.drain_emitted()]
    assert findings and all(len(x.item["targets"]) <= 100 for x in findings)
    assert max(len(x.model_dump_json()) for x in findings) < 64 << 10
