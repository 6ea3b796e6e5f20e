"""The figures Chinese law names, each once, with its source: the table a lawyer reads.

"以上" includes the number itself (Criminal Law Art. 99), so every figure is a ``>=``. These
are criminal thresholds for prosecutors and courts: Stormwatch flags candidate cases. Every
number is configurable (``STORMWATCH_LAW__FIGURES='{"defamation_views_5000": 6000}'``) with the
legal value as default; ids never change, so alerts keep naming the rule they encode. The
source column names the article; the texts are in the primary sources it cites. ``MEASURED_AT``
says for every figure which function compares against it, or that none does ("not measured").
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class Figure:
    id: str
    value: int
    counts: str
    source: str
    alert: str


TABLE: tuple[Figure, ...] = (
    Figure("defamation_views_5000", 5_000, "clicks or views of the same defamatory item",
           "Interpretation 2013-21 Art. 2(1)", "legal_threshold"),
    Figure("defamation_reposts_500", 500, "reposts of the same defamatory item",
           "Interpretation 2013-21 Art. 2(1)", "legal_threshold"),
    Figure("defamation_cumulative_1y", 365, "days within which one account's defamatory items, not yet dealt "
           "with, are aggregated against the two figures above", "Interpretation 2013-21 Art. 4", "legal_threshold"),
    Figure("defamation_repeat_3", 3, "defamatory items of one account (多次, read as three or more; the number "
           "is a policy choice) before the Art. 4 aggregation applies", "Interpretation 2013-21 Art. 4",
           "legal_threshold"),
    Figure("dissemination_videos_200", 200, "illegal video files disseminated after the order",
           "Interpretation 2019-15 Art. 3(1)", "duty_refusal"),
    Figure("dissemination_items_2000", 2_000, "other illegal information items disseminated after the order",
           "Interpretation 2019-15 Art. 3(2), mixed counts convert per Art. 3(3)", "duty_refusal"),
    Figure("dissemination_accounts_2000", 2_000, "user accounts the illegal information reached",
           "Interpretation 2019-15 Art. 3(4)", "duty_refusal"),
    Figure("dissemination_groups_3000", 3_000, "cumulative members of the groups it was spread in",
           "Interpretation 2019-15 Art. 3(5)", "duty_refusal"),
    Figure("dissemination_followers_30000", 30_000, "cumulative followers of the social accounts that spread it",
           "Interpretation 2019-15 Art. 3(5)", "duty_refusal"),
    Figure("dissemination_clicks_50000", 50_000, "actual clicks on the illegal information",
           "Interpretation 2019-15 Art. 3(6)", "duty_refusal"),
    Figure("leak_sensitive_500", 500, "users' whereabouts, communication content, credit or property records leaked",
           "Interpretation 2019-15 Art. 4(1)", "duty_refusal"),
    Figure("leak_safety_5000", 5_000, "users' lodging, communication records (通信记录), health or transaction "
           "records leaked", "Interpretation 2019-15 Art. 4(2)", "duty_refusal"),
    Figure("leak_other_50000", 50_000, "other users' personal information leaked",
           "Interpretation 2019-15 Art. 4(3); mixed counts convert per Art. 4(4)", "duty_refusal"),
    Figure("repeat_refusal_2y", 3, "correction orders refused within two years (多次; the number is a policy choice)",
           "Interpretation 2019-15 Art. 6(2)", "duty_refusal"),
    Figure("marketing_followers_30000", 30_000, "cumulative followers of public accounts pushing the content",
           "Opinions 法发〔2023〕14号 (蹭炒热度, 推广引流) with Interpretation 2019-15 Art. 10(4) item 4", "illegal_marketing"),
    Figure("marketing_accounts_2000", 2_000, "accounts the pushed content reached",
           "Opinions 法发〔2023〕14号 with Interpretation 2019-15 Art. 10(4) item 2", "illegal_marketing"),
    Figure("marketing_posts_100", 100, "posts pushing the content",
           "Opinions 法发〔2023〕14号 with Interpretation 2019-15 Art. 10(4) item 1", "illegal_marketing"),
    Figure("doxxing_sensitive_50", 50, "whereabouts, communication content, credit or property items published",
           "Interpretation 2017-10 Art. 5(3)", "violence_surge"),
    Figure("doxxing_safety_500", 500, "lodging, communication records (通信记录), health or transaction items published",
           "Interpretation 2017-10 Art. 5(4)", "violence_surge"),
    Figure("doxxing_other_5000", 5_000, "other personal information items published",
           "Interpretation 2017-10 Art. 5(5); mixed counts convert per Art. 5(6)", "violence_surge"),
    # Read only with `case` events (docs/CONTRACT.md): without them nothing is dealt with.
    Figure("defamation_after_penalty_2y", 730, "days after an administrative penalty for defamation within which "
           "defaming again is serious circumstances", "Interpretation 2013-21 Art. 2(3)", "legal_threshold"),
    Figure("aggregation_unhandled_2y", 730, "days within which a platform's refusals not yet dealt with (as many as "
           "repeat_refusal_2y) have their dissemination figures aggregated", "Interpretation 2019-15 Art. 16",
           "duty_refusal"),
)
BY_ID = {f.id: f for f in TABLE}

NOT_MEASURED = "not measured"
# Where each figure is measured (``module:Class.function`` that compares against it), or
# "not measured: <why>": a figure here that nothing reads is not enforced, and says so.
MEASURED_AT: dict[str, str] = {
    "defamation_views_5000": "detectors.cascades:CascadeWatch._check, CascadeWatch._viral, Cascades._cumulative",
    "defamation_reposts_500": "detectors.cascades:CascadeWatch._check, CascadeWatch._viral, Cascades._cumulative",
    "defamation_cumulative_1y": "detectors.cascades:Cascades._cumulative",
    "defamation_repeat_3": "detectors.cascades:Cascades._cumulative",
    "dissemination_videos_200": f"{NOT_MEASURED}: posts carry no media type, so video files are not told apart "
                                "(nor is the Art. 3(3) mixed-count conversion applied)",
    "dissemination_items_2000": "detectors.orders:OrderLedger.grounds (items only; the Art. 3(3) conversion "
                                "with videos is not measured)",
    "dissemination_accounts_2000": "detectors.orders:OrderLedger.grounds",
    "dissemination_groups_3000": f"{NOT_MEASURED}: the contract has no group membership counts",
    "dissemination_followers_30000": "detectors.orders:OrderLedger.grounds",
    "dissemination_clicks_50000": "detectors.orders:OrderLedger.grounds",
    "leak_sensitive_500": f"{NOT_MEASURED}: no input reports user-data leaks",
    "leak_safety_5000": f"{NOT_MEASURED}: no input reports user-data leaks",
    "leak_other_50000": f"{NOT_MEASURED}: no input reports user-data leaks",
    "repeat_refusal_2y": "detectors.orders:OrderLedger._repeat_refusals",
    "marketing_followers_30000": "detectors.cascades:Cascades._marketing",
    "marketing_accounts_2000": "detectors.cascades:Cascades._marketing",
    "marketing_posts_100": "detectors.cascades:Cascades._marketing",
    "doxxing_sensitive_50": f"{NOT_MEASURED}: posts carry no count of the personal-information items they publish",
    "doxxing_safety_500": f"{NOT_MEASURED}: posts carry no count of the personal-information items they publish",
    "doxxing_other_5000": f"{NOT_MEASURED}: posts carry no count of the personal-information items they publish",
    "defamation_after_penalty_2y": "detectors.cascades:Cascades._after_penalty",
    "aggregation_unhandled_2y": "detectors.orders:OrderLedger._aggregate",
}


def measured(figure_id: str) -> bool:
    """True when some detector compares against the figure (see ``MEASURED_AT``)."""
    return not MEASURED_AT[figure_id].startswith(NOT_MEASURED)


class LawSettings(BaseModel):
    """Overrides of the legal figures, by id; anything not named keeps its legal value."""

    figures: dict[str, int] = Field(default_factory=dict)

    def model_post_init(self, _context: object) -> None:
        unknown = set(self.figures) - set(BY_ID)
        if unknown:
            raise ValueError(f"unknown legal figure ids: {sorted(unknown)}")

    def limit(self, figure_id: str) -> int:
        return self.figures.get(figure_id, BY_ID[figure_id].value)

    def source(self, figure_id: str) -> str:
        return BY_ID[figure_id].source
