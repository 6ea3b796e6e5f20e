"""Who did what in an attack: the roles the Opinions direct punishment at, as candidates.

The Opinions on punishing online violence (法发〔2023〕14号) ask to strike at "恶意发起者、组织者、
恶意推波助澜者以及屡教不改者": malicious initiators, organisers, malicious amplifiers and repeat
offenders. Alerts that name persons carry ``evidence.roles``: one entry per account and role,
``{"role", "account", "candidate": true, "term", "figures"}`` (plus ``platform`` where the alert
is about a target, whose record spans platforms). Stormwatch measures behaviour; whether anyone
acted maliciously is for people to judge, so every entry is a candidate and says so.

Plain functions over the state the detectors already keep (and small bounded additions to it),
in event time, so replay and Kafka give the same roles. Each role names at most
``MAX_PER_ROLE`` accounts, the strongest by its figures (ties by account id): an alert stays
small and a reader sees the few accounts that matter most; the full lists stay in the evidence.

How each is found:

* initiator: a cascade's root author (legal_threshold, viral_spread); the first public account
  to push harmful content about a target (illegal_marketing); the account(s) whose first harmful
  post about a target came earliest in the window (violence_surge); the founding strong pair of a
  campaign (water_army_campaign).
* organiser (campaigns only: the structure is there): among the earliest quarter of members (at
  least ``MAX_PER_ROLE``), those tied to at least ``ORGANISER_MIN_PAIRS`` others by strong pairs,
  the most tied first.
* amplifier: reposters of a cascade who reposted it at least ``AMPLIFIER_MIN_POSTS`` times or
  have at least ``AMPLIFIER_MIN_FOLLOWERS`` followers (the most followed first); attackers of a target with at least
  ``AMPLIFIER_MIN_POSTS`` harmful posts; campaign members with the most recent posts; public
  accounts with the most followers pushing content about a target.
* repeat offender: an account named in an earlier alert about the same target that posted harmful
  content about it again (``REPEAT_MIN_POSTS`` or more posts after being named), or an account
  with a ``case`` (penalty, warning, case opened) decided before the conduct.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from events import keys as ids
from events.models import format_ts

MAX_PER_ROLE = 5  # accounts named per role in one alert
ORGANISER_MIN_PAIRS = 3  # strong pairs that make a member central
AMPLIFIER_MIN_POSTS = 2  # posts (reposts of one cascade, harmful posts about one target) that amplify
AMPLIFIER_MIN_FOLLOWERS = 1_000  # followers of a reposter whose single repost amplifies
REPEAT_MIN_POSTS = 2  # harmful posts after being named in an alert that make a repeat
MAX_NAMED = 200  # accounts a target's record remembers as named by its alerts (as many as the evidence lists)
MAX_BIG = 10  # reposters a cascade item remembers by followers

TERMS = {
    "initiator": "candidate initiator (恶意发起者)",
    "organiser": "candidate organiser (组织者)",
    "amplifier": "candidate amplifier (恶意推波助澜者)",
    "repeat_offender": "candidate repeat offender (屡教不改者)",
}


def entry(role: str, account: str, figures: dict, platform: str | None = None) -> dict:
    return {"role": role, "account": account, "candidate": True, "term": TERMS[role],
            **({"platform": platform} if platform is not None else {}), "figures": figures}


def _top(scored: Iterable[tuple[tuple, str]]) -> list[str]:
    """Accounts by descending score, ties by account id, at most ``MAX_PER_ROLE``."""
    return [account for _score, account in sorted(scored, key=lambda x: (tuple(-v for v in x[0]), x[1]))][:MAX_PER_ROLE]


# -- water-army campaigns --------------------------------------------------------------------------


def campaign(members: dict[str, float], degree: dict[str, int], posts: dict[str, float],
             half_life_s: float) -> list[dict]:
    """Roles in a campaign from its members' join times, strong-pair degrees and recent posts
    (post counts decayed with ``half_life_s``, as the detector keeps them)."""
    if not members:
        return []
    order = sorted(members, key=lambda a: (members[a], a))
    first = members[order[0]]
    roles = [entry("initiator", a, {"joined": format_ts(first), "strong_pairs": degree.get(a, 0)})
             for a in order if members[a] == first][:MAX_PER_ROLE]
    early = order[:max(MAX_PER_ROLE, math.ceil(len(order) / 4))]
    rank = {a: n + 1 for n, a in enumerate(order)}
    central = _top(((degree.get(a, 0),), a) for a in early if degree.get(a, 0) >= ORGANISER_MIN_PAIRS)
    roles += [entry("organiser", a, {"strong_pairs": degree[a], "join_rank": rank[a], "members": len(order),
                                     "joined": format_ts(members[a])}) for a in central]
    busy = _top(((posts.get(a, 0.0),), a) for a in order if posts.get(a, 0.0) >= AMPLIFIER_MIN_POSTS)
    roles += [entry("amplifier", a, {"recent_posts": round(posts[a], 2), "half_life_s": half_life_s}) for a in busy]
    return roles


# -- targets under attack ----------------------------------------------------------------------------


def note_attack(rec: dict, attacker: str, t: float) -> None:
    """A harmful post by ``attacker`` (a platform-scoped key) about the record's target: counted
    if an earlier alert named the attacker."""
    named = rec.get("named")
    if named and attacker in named and t > named[attacker][0]:
        named[attacker][1] += 1


def note_named(rec: dict, attackers: Iterable[str], t: float) -> None:
    """The attackers an alert at ``t`` named; the newest ``MAX_NAMED`` are remembered."""
    named = rec.setdefault("named", {})
    for key in attackers:
        if key not in named:
            named[key] = [t, 0]
    while len(named) > MAX_NAMED:  # insertion order is time order
        del named[next(iter(named))]


def target(attackers: dict[str, list], named: dict[str, list]) -> list[dict]:
    """Roles among a target's attackers (values ``[latest, platform, posts, account, first]``)."""
    if not attackers:
        return []

    def first(v: list) -> float:
        return v[4] if len(v) > 4 else v[0]

    earliest = min(first(v) for v in attackers.values())
    starters = sorted((v[3], k) for k, v in attackers.items() if first(v) == earliest)[:MAX_PER_ROLE]
    roles = [entry("initiator", attackers[k][3], {"first_harmful_post": format_ts(earliest),
                                                  "harmful_posts": attackers[k][2]}, attackers[k][1])
             for _a, k in starters]
    loud = _top(((v[2],), k) for k, v in attackers.items() if v[2] >= AMPLIFIER_MIN_POSTS)
    roles += [entry("amplifier", attackers[k][3], {"harmful_posts": attackers[k][2]}, attackers[k][1]) for k in loud]
    again = _top(((n,), k) for k, (_t, n) in named.items() if n >= REPEAT_MIN_POSTS)
    for k in again:
        platform, account = ids.parts(k)[:2]
        roles.append(entry("repeat_offender", account, {"named_at": format_ts(named[k][0]),
                                                        "harmful_posts_after": named[k][1]}, platform))
    return roles


# -- cascades ---------------------------------------------------------------------------------------


def note_reposter(item: dict, account: str, followers: int | None) -> None:
    """Remember the ``MAX_BIG`` reposters of an item with the most followers (bounded)."""
    if followers is None:
        return
    big = item.setdefault("big", {})
    if account in big or len(big) < MAX_BIG:
        big[account] = max(big.get(account, 0), followers)
        return
    smallest = min(big, key=lambda a: (big[a], a))
    if (followers, account) > (big[smallest], smallest):
        del big[smallest]
        big[account] = followers


def cascade_item(item_id: str, item: dict) -> list[dict]:
    """Roles one cascade item shows by itself: its author, its strongest reposters."""
    roles = []
    author = item.get("author")
    if author is not None:
        roles.append(entry("initiator", author, {"post_id": item_id, "posted_at": format_ts(item["t0"]),
                                                 "followers": item.get("followers")}))
    accounts, big = item.get("accounts", {}), item.get("big", {})
    candidates = ({a for a, f in big.items() if f >= AMPLIFIER_MIN_FOLLOWERS}
                  | {a for a, n in accounts.items() if n >= AMPLIFIER_MIN_POSTS})
    candidates.discard(author)
    top = _top(((big.get(a, 0), accounts.get(a, 0)), a) for a in candidates)
    roles += [entry("amplifier", a, {"reposts": accounts.get(a, 0), "followers": big.get(a)}) for a in top]
    return roles


def cascade_author(author: str, t0: float, targets: list[str], author_cases: list[list],
                   named: dict[str, float]) -> list[dict]:
    """The author of a cascade item posted at ``t0`` as a repeat offender: cases decided before
    it, or an earlier alert that named the author over one of its targets. Kept apart from
    :func:`cascade_item` because it reads the author's record, not the item's."""
    roles = repeat_by_cases(author, author_cases, t0)
    earlier = {tg: ts for tg, ts in named.items() if tg in targets and ts < t0}
    if earlier and not roles:
        tg = min(earlier, key=lambda x: (earlier[x], x))
        roles.append(entry("repeat_offender", author, {"target_id": tg, "named_at": format_ts(earlier[tg])}))
    return roles


def repeat_by_cases(account: str, cases: list[list], before: float) -> list[dict]:
    """The account as a repeat offender when cases about it were decided before ``before``."""
    prior = [c for c in cases if c[0] < before]
    if not prior:
        return []
    last = prior[-1]
    return [entry("repeat_offender", account, {"cases": len(prior), "last_case_id": last[1], "last_action": last[2],
                                               "last_conduct": last[3], "last_decided_at": format_ts(last[0])})]


def marketing(accounts: dict[str, int]) -> list[dict]:
    """Roles among public accounts pushing content about a target (``{account: followers}`` in
    the order they first did)."""
    if not accounts:
        return []
    first = next(iter(accounts))
    roles = [entry("initiator", first, {"followers": accounts[first], "first_of": len(accounts)})]
    others = _top(((f,), a) for a, f in accounts.items() if a != first)
    roles += [entry("amplifier", a, {"followers": accounts[a]}) for a in others]
    return roles
