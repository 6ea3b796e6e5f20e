"""Targets under attack: the right violence_surge alerts, and silence for ordinary criticism."""

from __future__ import annotations

import orjson
import pytest

from detectors.targets import PostTargets, Targets, TargetSettings
from events import decode, format_ts
from streams.engine import Engine
from tests.support.scenarios import T0

INSULTS = ["这种人怎么还有脸出来，滚出网络", "恶心的骗子，大家一起骂她", "她活该被骂，人品太差了", "垃圾一个，早点消失吧"]


class Feed:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def post(self, minute: float, author: str, target: dict, text: str = "", labels=(), platform="weibo", **extra):
        n = len(self.events)
        self.events.append({"type": "post", "event_id": f"e{n:05d}", "platform": platform,
                            "ts": format_ts(T0 + minute * 60), "post_id": f"p{n}", "account_id": author,
                            "kind": "comment" if extra.get("parent_id") else "original", "text": text,
                            "labels": list(labels), "targets": [target], **extra})

    def report(self, minute: float, reporter: str, target: dict | None, post_id: str = "p0", by_target: bool = False):
        """A report; ``target`` None: it names only the post, as most platforms' reports do."""
        n = len(self.events)
        self.events.append({"type": "report", "event_id": f"e{n:05d}", "platform": "weibo",
                            "ts": format_ts(T0 + minute * 60), "report_id": f"r{n}", "reporter_id": reporter,
                            "post_id": post_id, "targets": [target] if target else [], "category": "insult",
                            "reporter_is_target": by_target})

    def run(self, settings: TargetSettings | None = None) -> list[dict]:
        engine = Engine([PostTargets(settings), Targets(settings)])
        out = []
        for raw in sorted(self.events, key=lambda e: (e["ts"], e["event_id"])) + [
                {"type": "tick", "ts": format_ts(T0 + 30 * 86400)}]:
            out.extend(a.model_dump() for a in engine.process(decode(orjson.dumps(raw), "t")))
        assert not engine.failures
        return [a for a in out if a["kind"] == "violence_surge"]


def test_an_attack_on_a_minor_is_critical_at_half_the_threshold() -> None:
    f = Feed()
    child = {"id": "kid", "minor": True}
    for k in range(5):  # five attackers: half of the default ten
        f.post(k, f"a{k}", child, INSULTS[k % 4], labels=["insult"], parent_id="root-post")
    [alert] = f.run()
    assert alert["subject"] == {"type": "target", "id": "kid"} and alert["severity"] == "critical"
    assert alert["aggravating"] == ["minor_target"] and alert["evidence"]["account_count"] == 5
    assert alert["evidence"]["threads"] == ["root-post"] and alert["ts"] == format_ts(T0 + 4 * 60)


def test_four_attackers_on_an_adult_are_not_yet_a_surge() -> None:
    f = Feed()
    for k in range(9):
        f.post(k, f"a{k}", {"id": "adult"}, INSULTS[k % 4], labels=["insult"])
    assert f.run() == []


def test_a_doxxing_wave_is_critical() -> None:
    f = Feed()
    for k in range(12):
        f.post(k * 2, f"d{k}", {"id": "victim"}, f"她家住在某小区{k}栋，电话是…", labels=["doxxing"])
    alerts = f.run()
    assert alerts[0]["severity"] == "critical" and alerts[0]["evidence"]["labels"] == {"doxxing": 10}


def test_a_report_surge_including_the_targets_own_reports() -> None:
    f = Feed()
    target = {"id": "streamer"}
    for k in range(3):  # a quiet baseline: a few reports a day for a week
        for day in range(7):
            f.report(day * 1440 + k * 60, f"old{day}-{k}", target, post_id=f"old{day}")
    for k in range(12):
        f.report(7 * 1440 + k * 3, f"new{k}", target, post_id="p-hot")
    f.report(7 * 1440 + 40, "streamer", target, post_id="p-hot", by_target=True)
    f.report(7 * 1440 + 41, "new1", target, post_id="p-hot")  # a duplicate report: not counted
    alerts = f.run()
    assert alerts[0]["evidence"]["reports"] == 10 and alerts[0]["ts"] == format_ts(T0 + (7 * 1440 + 27) * 60)
    assert alerts[0]["evidence"]["report_baseline"] < 10 / 3  # what a surge is measured against
    assert alerts[-1]["version"] == 2 and alerts[-1]["evidence"]["reported_by_target"] is True
    assert alerts[-1]["evidence"]["reports"] == 13  # the duplicate report was not counted
    assert alerts[-1]["evidence"]["reports_by_item"] == {"post:p-hot": 13}


def test_a_cross_platform_pile_on_names_the_public_prosecution_factors() -> None:
    f = Feed()
    person = {"id": "teacher-wang"}
    for k in range(60):
        f.post(k / 2, f"x{k}", person, INSULTS[k % 4], labels=["insult"], platform=["weibo", "douyin", "zhihu"][k % 3])
    latest = {a["alert_id"]: a for a in f.run()}.values()
    alert = next(a for a in latest if a.get("audience") == "regulator")
    assert alert["evidence"]["platforms"] == ["douyin", "weibo", "zhihu"]
    assert alert["evidence"]["public_prosecution_factors"] == ["ordinary_person_mass_malicious_comments",
                                                                 "organised_across_platforms"]
    assert "Criminal Law Art. 246(2)" in alert["legal_refs"] and alert["severity"] == "critical"
    assert "candidate public-prosecution factors" in alert["summary"]


def test_a_cross_platform_finding_gives_each_platform_only_its_own_part() -> None:
    """The regulator's alert has everything; each platform's has its own accounts, posts,
    threads and hashtags only, under an id of its own, pointing at the regulator's."""
    f = Feed()
    person = {"id": "teacher-wang"}
    platforms = ["weibo", "douyin", "zhihu"]
    for k in range(60):
        platform = platforms[k % 3]
        f.post(k / 2, f"{platform}-acct{k}", person, INSULTS[k % 4], labels=["insult"], platform=platform,
               hashtags=[f"tag-{platform}"], parent_id=f"thread-{platform}")
    latest = {a["alert_id"]: a for a in f.run()}
    full = next(a for a in latest.values() if a.get("audience") == "regulator")
    own = {a["platform"]: a for a in latest.values() if not a.get("audience")}
    assert sorted(own) == sorted(platforms)
    for platform, alert in own.items():
        evidence = alert["evidence"]
        assert evidence["accounts"] and all(a.startswith(f"{platform}-") for a in evidence["accounts"])
        assert evidence["hashtags"] == [f"tag-{platform}"] and evidence["threads"] == [f"thread-{platform}"]
        assert evidence["platforms"] == [platform]
        assert set(evidence["posts"]) <= {e["post_id"] for e in f.events if e["platform"] == platform}
        assert evidence["cross_platform"] == {"alert_id": full["alert_id"], "platforms": 3}
        assert alert["alert_id"] != full["alert_id"]
    assert len({a["alert_id"] for a in own.values()}) == 3
    # Each platform's alert is judged on its own posts, the regulator's on all of them: their
    # latest versions need not come together, but the regulator's counts every platform's accounts.
    assert full["evidence"]["account_count"] == sum(e["ts"] <= full["ts"] for e in f.events)
    assert len(full["evidence"]["hashtags"]) == 3 and full["evidence"]["platforms"] == sorted(platforms)


def test_ordinary_criticism_of_a_public_figure_raises_nothing() -> None:
    f = Feed()
    official = {"id": "minister", "public_figure": True}
    opinions = ["这个政策的解读不够清楚，希望能再详细说明", "我不同意这个方案，成本太高了", "建议听取更多基层意见再做决定",
                "数据来源需要公开，否则难以信服", "这次发布会的回答有点敷衍"]
    for k in range(300):
        f.post(k / 10, f"c{k}", official, opinions[k % 5])
    assert f.run() == []


def test_unlabelled_abuse_counts_through_stormwatchs_classifier() -> None:
    f = Feed()
    for k in range(12):  # no platform labels at all
        f.post(k, f"u{k}", {"id": "neighbour"}, "这种男人又无耻又恶心，自己算什么东西")
    alerts = f.run()
    assert alerts and alerts[0]["evidence"]["classifier_flagged"] >= 10
    assert alerts[0]["evidence"]["labels"] == {"stormwatch_offensive": alerts[0]["evidence"]["classifier_flagged"]}
    verdict = alerts[0]["evidence"]["classifier_verdicts"][0]
    assert verdict["source"] == "stormwatch" and verdict["label"] == "offensive" and verdict["confidence"] >= 0.8


def test_reports_naming_only_a_post_reach_the_persons_it_attacks() -> None:
    f = Feed()
    f.post(0, "troll", {"id": "nurse-li", "minor": False}, "她活该被骂，人品太差了", labels=["insult"])  # post p0
    f.post(1, "other", {"id": "someone-else"}, "今天天气不错")  # p1: no harmful label, another target
    for k in range(12):
        f.report(10 + k, f"r{k}", None, post_id="p0")
    f.report(30, "r0", None, post_id="p0")  # the same reporter and post again: once
    f.report(31, "r99", None, post_id="never-seen")  # a post Stormwatch never saw: reaches no one
    alerts = f.run()
    assert {a["subject"]["id"] for a in alerts} == {"nurse-li"}
    first = alerts[0]  # at the tenth report (min_reports), in the post's target's own record
    assert first["ts"] == format_ts(T0 + 19 * 60) and first["evidence"]["reports_by_item"] == {"post:p0": 10}


def test_a_post_older_than_the_link_horizon_no_longer_ties_its_reports() -> None:
    f = Feed()
    f.post(0, "troll", {"id": "nurse-li"}, "她活该被骂，人品太差了", labels=["insult"])
    for k in range(12):
        f.report(24 * 60 + k, f"r{k}", None, post_id="p0")  # a day later
    assert f.run(TargetSettings(link_reports_s=3600)) == []
    assert f.run()[0]["evidence"]["reports"] == 10  # the default horizon is a week


def test_repeated_dissemination_and_several_victims_are_public_prosecution_factors() -> None:
    f = Feed()
    for k in range(10):
        f.post(k, f"a{k}", {"id": "cook-zhao"}, INSULTS[k % 4], labels=["insult"])
    plain = f.run()[-1]["evidence"]
    assert plain["public_prosecution_factors"] == [] and plain["repeated_by"] == {}
    for k in range(2):  # a0 keeps at it: three harmful posts about the same person
        f.post(20 + k, "a0", {"id": "cook-zhao"}, INSULTS[k], labels=["insult"])
    alert = f.run()[-1]
    assert alert["evidence"]["public_prosecution_factors"] == ["several_victims_or_repeated_dissemination"]
    assert alert["evidence"]["repeated_by"] == {"a0": 3} and alert["severity"] == "critical"
    g = Feed()
    for k in range(10):  # every post attacks the cook and her daughter together
        g.post(k, f"b{k}", {"id": "cook-zhao"}, INSULTS[k % 4], labels=["insult"], targets=[
            {"id": "cook-zhao"}, {"id": "cook-zhao-daughter"}])
    by_target = {a["subject"]["id"]: a for a in g.run()}
    assert by_target["cook-zhao"]["evidence"]["other_victims"] == ["cook-zhao-daughter"]
    assert by_target["cook-zhao-daughter"]["evidence"]["public_prosecution_factors"] == [
        "several_victims_or_repeated_dissemination"]


DISTINCT = ["这个老师人品太差了，根本不配教书", "骗子一个，谁信谁倒霉，赶紧滚蛋", "她家里人也都不是什么好东西吧",
            "看她那副嘴脸就知道是装出来的", "早就该曝光这种人，恶心到家了", "垃圾学校才会招这样的人来上班",
            "天天在网上装可怜，真会演戏啊", "大家去她单位举报她，让她丢饭碗", "这种人活着就是浪费社会资源",
            "我要是她早就没脸出门见人了"]
SAME = "大家一起来骂这个骗子，别让她好过！"


@pytest.mark.parametrize("same,coordinated", [(4, False), (5, True), (6, True)])
def test_a_surge_with_coordinated_near_identical_posts_carries_water_army(same: int, coordinated: bool) -> None:
    """Issue 16, item 5: violence_surge never carried ``water_army``. Campaign findings live in
    the water-army stage (keyed by platform); the target's own window shows coordination:
    distinct attackers posting near-identical text (punctuation and width folded)."""
    f = Feed()
    for k in range(10):
        text = SAME.replace("！", "!" * (k % 2)) if k < same else DISTINCT[k]
        f.post(k, f"a{k}", {"id": "adult"}, text, labels=["insult"])
    latest = f.run()[-1]
    assert ("water_army" in latest["aggravating"]) is coordinated
    assert latest["evidence"]["coordinated_posting"] == {"accounts": same, "across_platforms": 0, "limit": 5}
    assert ("near-identical" in latest["summary"]) is coordinated
    assert latest["evidence"]["public_prosecution_factors"] == []  # one platform: nothing across platforms


def test_harmful_posts_on_two_platforms_are_not_organised_without_evidence_of_it() -> None:
    """Issue 16, item 6: ``organised_across_platforms`` was set whenever harmful posts came from
    two platforms. It now needs one near-identical text posted on several of them."""
    f = Feed()
    for k in range(10):
        f.post(k, f"a{k}", {"id": "adult"}, DISTINCT[k], labels=["insult"], platform=["weibo", "douyin"][k % 2])
    regulator = next(a for a in f.run() if a.get("audience") == "regulator")
    assert regulator["evidence"]["platforms"] == ["douyin", "weibo"]
    assert regulator["evidence"]["public_prosecution_factors"] == [] and "water_army" not in regulator["aggravating"]
    g = Feed()
    for k in range(10):  # five accounts post one text on two platforms
        g.post(k, f"a{k}", {"id": "adult"}, SAME if k < 5 else DISTINCT[k], labels=["insult"],
               platform=["weibo", "douyin"][k % 2])
    regulator = [a for a in g.run() if a.get("audience") == "regulator"][-1]
    assert regulator["evidence"]["public_prosecution_factors"] == ["organised_across_platforms"]
    assert "Opinions 法发〔2023〕14号 Art. 12(4)" in regulator["legal_refs"] and "water_army" in regulator["aggravating"]
    h = Feed()
    for k in range(10):  # five accounts post one text, all on one platform: organised, not across platforms
        h.post(k, f"a{k}", {"id": "adult"}, SAME if k < 5 else DISTINCT[k], labels=["insult"],
               platform="weibo" if k < 5 else "douyin")
    regulator = [a for a in h.run() if a.get("audience") == "regulator"][-1]
    assert regulator["evidence"]["public_prosecution_factors"] == [] and "water_army" in regulator["aggravating"]


@pytest.mark.parametrize("first,initiated", [(True, True), (False, False)])
def test_provider_organized_only_when_a_platform_run_account_started_the_attack(first: bool, initiated: bool) -> None:
    """Issue 16, item 6: one harmful post of a platform-run account among ten attackers set
    ``provider_organized``; the Opinions say 发起、组织 (initiated, organised)."""
    f = Feed()
    run_by = 0 if first else 5
    for k in range(10):
        f.post(k, f"a{k}", {"id": "adult"}, DISTINCT[k], labels=["insult"],
               account={"platform_operated": k == run_by})
    [alert] = f.run()
    assert ("provider_organized" in alert["aggravating"]) is initiated


def test_public_prosecution_factors_cite_their_items_of_opinions_art_12() -> None:
    """Issue 16, item 7: the factors are Opinions Art. 12's listed cases; each is cited."""
    f = Feed()
    for k in range(50):
        f.post(k / 10, f"a{k}", {"id": "adult"}, DISTINCT[k % 10] + str(k), labels=["insult"])
    latest = f.run()[-1]
    assert latest["evidence"]["public_prosecution_factors"] == ["ordinary_person_mass_malicious_comments"]
    assert "Opinions 法发〔2023〕14号 Art. 12(2)" in latest["legal_refs"]
    assert any(r.startswith("Opinions 法发〔2023〕14号 Art. 12 (") for r in latest["legal_refs"])


@pytest.mark.parametrize("same,organised", [(4, False), (5, True), (6, True)])
def test_one_text_on_two_platforms_by_five_accounts_is_organised_across_platforms(same: int, organised: bool) -> None:
    f = Feed()
    for k in range(10):
        f.post(k, f"a{k}", {"id": "adult"}, SAME if k < same else DISTINCT[k], labels=["insult"],
               platform=["weibo", "douyin"][k % 2])
    regulator = [a for a in f.run() if a.get("audience") == "regulator"][-1]
    assert ("organised_across_platforms" in regulator["evidence"]["public_prosecution_factors"]) is organised
    assert regulator["evidence"]["coordinated_posting"]["across_platforms"] == same
