"""Cases and sanctions (the optional ``case`` input): which conduct is already dealt with.

The interpretations count conduct "not yet dealt with" (未经处理): 2013-21 Art. 4 aggregates an
account's defamation within a year, 2019-15 Art. 16 a platform's repeated refusals within two
years, each only over conduct no penalty or case has handled. 2013-21 Art. 2(3) makes defamation
serious when the account was administratively penalised for defamation within the two years
before. A ``case`` event says an account or a platform was penalised or warned, or a case was
opened, at ``decided_at``; the subject's conduct up to that time is taken as dealt with.

A detector keeps the cases of each subject it judges in its own state (one record per subject,
``case``), through these helpers, so the ledger and the cascades read the same rules. A stream
without ``case`` events keeps no such record and gives the same alerts as before the event
type existed.
"""

from __future__ import annotations

import bisect

from events.models import Case
from events.records import Records

TWO_YEARS = 2 * 365 * 86400.0
MAX_CASES = 20  # per subject, the newest by decision time: enough to show a history, bounded
PENALTIES = frozenset({"penalty", "warning"})  # administrative penalties (a warning is one, 行政处罚法 Art. 9)


def note_case(records: Records, platform: str, case: Case, keep_s: float = TWO_YEARS) -> dict | None:
    """Record ``case`` under its subject; the subject's record, or None when it changes nothing:
    a duplicate (the same case id and action again) or a case older than the newest kept."""
    kind, subject = case.subject.type, case.subject.id
    rec = records.get("case", platform, kind, subject) or {"cases": [], "handled": None}
    entry = [case.decided_epoch, case.case_id, case.action, case.conduct]
    if any(c[1] == case.case_id and c[2] == case.action for c in rec["cases"]):
        return None
    bisect.insort(rec["cases"], entry)
    del rec["cases"][:-MAX_CASES]
    if entry not in rec["cases"]:
        # Older than the newest MAX_CASES: it moves nothing (``handled`` is already later), and
        # it may be a repeat of one trimmed before, which must change nothing either.
        return None
    rec["handled"] = max(rec["handled"] if rec["handled"] is not None else entry[0], entry[0])
    until = max(rec.get("until", 0.0), rec["cases"][-1][0] + keep_s)
    records.save("case", platform, kind, subject, record=rec, until=until)
    return rec


def cases_of(records: Records, platform: str, kind: str, subject: str) -> dict | None:
    return records.get("case", platform, kind, subject)


def handled_until(rec: dict | None) -> float:
    """Event time up to which the subject's conduct is dealt with (-inf: none of it)."""
    return rec["handled"] if rec and rec.get("handled") is not None else float("-inf")


def prior_penalty(rec: dict | None, conduct: str, at: float, within: float) -> list | None:
    """The latest penalty (or warning) for ``conduct`` decided before ``at`` and at most
    ``within`` seconds before it ("二年内曾因诽谤受过行政处罚": the two years include their last
    day), as ``[decided, case_id, action, conduct]``; None if there is none."""
    found = None
    for entry in (rec or {}).get("cases", []):
        decided, _cid, action, what = entry
        if action in PENALTIES and what == conduct and decided < at <= decided + within:
            found = entry
    return found
