"""Roles (evidence.roles): initiators, organisers, amplifiers and repeat offenders, as candidates,
with the figures behind them, at, just below and just above each figure."""

from __future__ import annotations

import pytest

from detectors import roles
from events import format_ts
from tests.support.scenarios import T0, Stream
from tests.test_cascades import Feed as CascadeFeed
from tests.test_targets import Feed as TargetFeed
from tests.test_water_army import army, campaigns
from tests.test_water_army import run as run_water_army

ADULT = {"id": "lin"}


def by_role(alert: dict, role: str) -> list[str]:
    return [r["account"] for r in alert["evidence"]["roles"] if r["role"] == role]


def well_formed(alert: dict) -> None:
    for r in alert["evidence"]["roles"]:
        assert r["candidate"] is True and r["term"].startswith("candidate ") and isinstance(r["figures"], dict)
    for role in roles.TERMS:
        assert len(by_role(alert, role)) <= roles.MAX_PER_ROLE


# -- the rules, on their own -------------------------------------------------------------------------


@pytest.mark.parametrize("pairs,organiser", [(2, False), (3, True), (4, True)])
def test_an_organiser_is_early_and_tied_to_at_least_three_others(pairs: int, organiser: bool) -> None:
    members = {f"m{i:02d}": float(i) for i in range(20)}
    found = roles.campaign(members, {"m01": pairs, "m19": 9}, {}, 86_400)
    assert ("m01" in [r["account"] for r in found if r["role"] == "organiser"]) is organiser
    assert "m19" not in [r["account"] for r in found if r["role"] == "organiser"]  # central but joined last


def test_each_role_names_at_most_five_the_strongest_first() -> None:
    members = {f"m{i:02d}": 0.0 for i in range(12)}
    degree = {f"m{i:02d}": 3 + i for i in range(12)}
    found = roles.campaign(members, degree, {f"m{i:02d}": 2.0 + i for i in range(12)}, 86_400)
    assert [r["account"] for r in found if r["role"] == "initiator"] == ["m00", "m01", "m02", "m03", "m04"]
    # organisers come from the earliest five (all joined together: by id), the most tied first
    assert [r["account"] for r in found if r["role"] == "organiser"] == ["m04", "m03", "m02", "m01", "m00"]
    assert [r["account"] for r in found if r["role"] == "amplifier"] == ["m11", "m10", "m09", "m08", "m07"]


@pytest.mark.parametrize("posts,amplifier", [(1.99, False), (2.0, True), (2.01, True)])
def test_a_campaign_amplifier_has_at_least_two_recent_posts(posts: float, amplifier: bool) -> None:
    found = roles.campaign({"a": 0.0, "b": 0.0}, {}, {"a": posts}, 86_400)
    assert ("a" in [r["account"] for r in found if r["role"] == "amplifier"]) is amplifier


def test_a_cascade_remembers_only_its_ten_reposters_with_the_most_followers() -> None:
    item: dict = {}
    for n in range(30):
        roles.note_reposter(item, f"r{n:02d}", n * 100)
    roles.note_reposter(item, "nobody-knows", None)
    assert sorted(item["big"]) == [f"r{n}" for n in range(20, 30)]


# -- water-army campaigns ----------------------------------------------------------------------------


def test_a_planted_campaigns_roles_are_its_members_with_their_figures() -> None:
    s = Stream(seed=3)
    s.organic(accounts=400, posts=3000, minutes=240)
    members = army(30)
    s.campaign(members, waves=6, every_min=30, width_min=2, start=20, target={"id": "victim-1"})
    (alert,) = campaigns(run_water_army(s.sorted_events()))
    well_formed(alert)
    named = {r["account"] for r in alert["evidence"]["roles"]}
    assert named <= set(alert["evidence"]["accounts"])
    assert len(by_role(alert, "initiator")) >= 2  # the founding strong pair
    organisers = [r for r in alert["evidence"]["roles"] if r["role"] == "organiser"]
    assert organisers and all(r["figures"]["strong_pairs"] >= roles.ORGANISER_MIN_PAIRS for r in organisers)
    assert [r["figures"]["strong_pairs"] for r in organisers] == sorted(
        (r["figures"]["strong_pairs"] for r in organisers), reverse=True)
    assert by_role(alert, "amplifier")


# -- targets under attack ----------------------------------------------------------------------------


def attack(extra_posts: dict[str, int]) -> TargetFeed:
    """Ten attackers, one post each from minute 1 (a00 first), plus ``extra_posts`` more each."""
    f = TargetFeed()
    for n in range(10):
        f.post(1 + n, f"a{n:02d}", ADULT, labels=["insult"])
    for account, more in extra_posts.items():
        for k in range(more):
            f.post(1.5 + k / 10, account, ADULT, labels=["insult"])
    return f


def test_the_first_attacker_initiates_and_each_entry_says_candidate() -> None:
    (alert,) = attack({}).run()
    well_formed(alert)
    assert by_role(alert, "initiator") == ["a00"]
    initiator = alert["evidence"]["roles"][0]
    assert initiator["platform"] == "weibo" and initiator["figures"]["first_harmful_post"] == format_ts(T0 + 60)


@pytest.mark.parametrize("posts,amplifier", [(1, False), (2, True), (3, True)])
def test_an_attacker_with_two_harmful_posts_amplifies(posts: int, amplifier: bool) -> None:
    (alert,) = attack({"a05": posts - 1}).run()
    assert ("a05" in by_role(alert, "amplifier")) is amplifier


@pytest.mark.parametrize("after,repeats", [(1, False), (2, True), (3, True)])
def test_posting_again_after_an_alert_named_you_repeats(after: int, repeats: bool) -> None:
    f = attack({})
    for k in range(after):  # a03, named by the alert at minute 10, attacks again
        f.post(12 + k, "a03", ADULT, labels=["insult"])
    for n in range(10, 20):  # the mob doubles: a new version
        f.post(20 + n / 10, f"a{n:02d}", ADULT, labels=["insult"])
    alerts = f.run()
    assert alerts[-1]["evidence"]["account_count"] == 20  # the last version is the doubled mob
    assert by_role(alerts[0], "repeat_offender") == []
    assert ("a03" in by_role(alerts[-1], "repeat_offender")) is repeats
    if repeats:
        entry = next(r for r in alerts[-1]["evidence"]["roles"] if r["role"] == "repeat_offender")
        assert entry["figures"] == {"named_at": format_ts(T0 + 10 * 60), "harmful_posts_after": after}
    assert "a15" not in by_role(alerts[-1], "repeat_offender")  # never named before


def test_each_platforms_alert_names_only_its_own_accounts_in_roles() -> None:
    f = TargetFeed()
    for n in range(10):  # enough on each platform alone: each platform's alert is judged on its own posts
        f.post(1 + n, f"w{n}", ADULT, labels=["insult"])
        f.post(1.5 + n, f"d{n}", ADULT, labels=["insult"], platform="douyin")
    f.post(1.2, "w0", ADULT, labels=["insult"])
    f.post(2.7, "d1", ADULT, labels=["insult"], platform="douyin")
    alerts = f.run()
    latest = {a["alert_id"]: a for a in alerts}.values()
    by_platform = {a["platform"]: a for a in latest}
    assert set(by_platform) == {"*", "weibo", "douyin"}
    for platform, prefix in (("weibo", "w"), ("douyin", "d")):
        entries = by_platform[platform]["evidence"]["roles"]
        assert entries and all(r["account"].startswith(prefix) and r["platform"] == platform for r in entries)
    assert by_role(by_platform["weibo"], "initiator") == ["w0"] and by_role(by_platform["douyin"], "initiator") == ["d0"]
    regulator = by_platform["*"]["evidence"]["roles"]
    assert {(r["platform"], r["account"]) for r in regulator if r["role"] == "amplifier"} == {
        ("weibo", "w0"), ("douyin", "d1")}


# -- cascades ----------------------------------------------------------------------------------------


def defamation_cascade(f: CascadeFeed, start: float = 0, pid: str = "p1", target: str = "lin",
                       reposts: dict[str, int] | None = None) -> None:
    f.post(start, pid, labels=["defamation"], targets=[{"id": target}], account={"followers": 900})
    for account, n in (reposts or {}).items():
        for k in range(n):
            f.post(start + 10 + k, f"{pid}-{account}-{k}", author=account, kind="repost", parent=pid)
    f.views(start + 100, pid, views=5_000)


def threshold_alerts(alerts: list[dict], fid: str = "defamation_views_5000") -> list[dict]:
    return [a for a in alerts if a["kind"] == "legal_threshold" and a["evidence"]["threshold"] == fid]


@pytest.mark.parametrize("reposts,amplifier", [(1, False), (2, True), (3, True)])
def test_the_author_initiates_and_repeated_reposters_amplify(reposts: int, amplifier: bool) -> None:
    f = CascadeFeed()
    defamation_cascade(f, reposts={"r1": reposts, "other": 1})
    (alert,) = threshold_alerts(f.run())
    well_formed(alert)
    assert by_role(alert, "initiator") == ["author"]
    assert alert["evidence"]["roles"][0]["figures"] == {"post_id": "p1", "posted_at": format_ts(T0), "followers": 900}
    assert ("r1" in by_role(alert, "amplifier")) is amplifier and "other" not in by_role(alert, "amplifier")


@pytest.mark.parametrize("followers,amplifier", [(999, False), (1_000, True), (1_001, True)])
def test_a_reposter_with_a_thousand_followers_amplifies(followers: int, amplifier: bool) -> None:
    f = CascadeFeed()
    f.post(0, "p1", labels=["defamation"], targets=[{"id": "lin"}])
    f.post(5, "rp-big", author="big", kind="repost", parent="p1", account={"followers": 80_000})
    f.post(6, "rp-mid", author="mid", kind="repost", parent="p1", account={"followers": followers})
    f.views(100, "p1", views=5_000)
    (alert,) = threshold_alerts(f.run())
    amplifiers = [(r["account"], r["figures"]) for r in alert["evidence"]["roles"] if r["role"] == "amplifier"]
    assert amplifiers == [("big", {"reposts": 1, "followers": 80_000})] + (
        [("mid", {"reposts": 1, "followers": followers})] if amplifier else [])


@pytest.mark.parametrize("decided,repeat", [(0, True), (1, False), (2, False)])
def test_an_author_with_a_case_decided_before_the_post_repeats(decided: float, repeat: bool) -> None:
    """The post is at second 1: a case decided just before it (0) makes a repeat; at it or just
    after it (a case about the post itself), not."""
    f = CascadeFeed()
    f._add(decided, {"type": "case", "case_id": "k1", "subject": {"type": "account", "id": "author"},
                     "action": "warning", "conduct": "insult"})
    defamation_cascade(f, start=1)
    f.events.sort(key=lambda e: (e["ts"], e["event_id"]))
    (alert,) = threshold_alerts(f.run())
    repeats = [r for r in alert["evidence"]["roles"] if r["role"] == "repeat_offender"]
    assert bool(repeats) is repeat
    if repeat:
        assert repeats[0]["figures"] == {"cases": 1, "last_case_id": "k1", "last_action": "warning",
                                         "last_conduct": "insult", "last_decided_at": format_ts(T0 + decided)}


@pytest.mark.parametrize("second_target,repeat", [("lin", True), ("someone-else", False)])
def test_defaming_the_same_target_after_an_alert_named_you_repeats(second_target: str, repeat: bool) -> None:
    f = CascadeFeed()
    defamation_cascade(f, start=0, pid="p1", target="lin")
    defamation_cascade(f, start=1_000, pid="p2", target=second_target)
    first, second = threshold_alerts(f.run())
    assert by_role(first, "repeat_offender") == []
    assert (by_role(second, "repeat_offender") == ["author"]) is repeat
    if repeat:
        entry = next(r for r in second["evidence"]["roles"] if r["role"] == "repeat_offender")
        assert entry["figures"] == {"target_id": "lin", "named_at": format_ts(T0 + 100)}


def test_a_case_alert_names_the_penalised_account_a_repeat_offender() -> None:
    f = CascadeFeed()
    f._add(0, {"type": "case", "case_id": "k1", "subject": {"type": "account", "id": "author"},
               "action": "penalty", "conduct": "defamation"})
    f.post(60, "p9", labels=["defamation"])
    (alert,) = threshold_alerts(f.run(), "defamation_after_penalty_2y")
    assert [(r["role"], r["account"], r["figures"]["last_case_id"]) for r in alert["evidence"]["roles"]] == [
        ("repeat_offender", "author", "k1")]




# -- victims' data -----------------------------------------------------------------------------------


def test_summaries_do_not_name_the_target_subject_and_evidence_do() -> None:
    person = {"id": "victim-林某-13800000000"}
    f = TargetFeed()
    for n in range(10):  # enough on each platform alone, as above
        f.post(1 + n, f"w{n}", person, labels=["insult"])
        f.post(1.5 + n, f"d{n}", person, labels=["insult"], platform="douyin")
    alerts = f.run()
    assert {a["platform"] for a in alerts} == {"*", "weibo", "douyin"}
    for alert in alerts:
        assert person["id"] not in alert["summary"] and "the target" in alert["summary"].lower()
        assert alert["subject"]["id"] == alert["evidence"]["target_id"] == person["id"]
    m = CascadeFeed()  # one public account past the followers figure on its own
    m.post(0, "m0", author="pub0", labels=["insult"], targets=[person],
           account={"public_account": True, "followers": 40_000})
    marketing = [a for a in m.run() if a["kind"] == "illegal_marketing"]
    assert marketing and all(person["id"] not in a["summary"] for a in marketing)
    assert by_role(marketing[-1], "initiator") == ["pub0"] and by_role(marketing[-1], "amplifier") == []
