"""The figures Chinese law names, each once, with its source: the table a lawyer reads.

"以上" includes the number itself (Criminal Law Art. 99), so every figure is a ``>=``. These
are criminal thresholds for prosecutors and courts: Stormwatch flags candidate cases. Every
number is configurable (``STORMWATCH_LAW__FIGURES='{"defamation_views_5000": 6000}'``) with the
legal value as default; ids never change, so alerts keep naming the rule they encode. The
source column names the article; the texts are in the primary sources it cites.
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
    Figure("leak_sensitive_500", 500, "users' whereabouts, communications, credit or property records leaked",
           "Interpretation 2019-15 Art. 4", "duty_refusal"),
    Figure("leak_safety_5000", 5_000, "users' lodging, call, health or transaction records leaked",
           "Interpretation 2019-15 Art. 4", "duty_refusal"),
    Figure("leak_other_50000", 50_000, "other users' personal information leaked",
           "Interpretation 2019-15 Art. 4", "duty_refusal"),
    Figure("repeat_refusal_2y", 3, "correction orders refused within two years (多次; the number is a policy choice)",
           "Interpretation 2019-15 Art. 6(2)", "duty_refusal"),
    Figure("marketing_followers_30000", 30_000, "cumulative followers of public accounts pushing the content",
           "Opinions 法发〔2023〕14号 (蹭炒热度, 推广引流) with Interpretation 2019-15 Art. 10(4)", "illegal_marketing"),
    Figure("marketing_accounts_2000", 2_000, "accounts the pushed content reached",
           "Opinions 法发〔2023〕14号 with Interpretation 2019-15 Art. 10(4)", "illegal_marketing"),
    Figure("marketing_posts_100", 100, "posts pushing the content",
           "Opinions 法发〔2023〕14号 with Interpretation 2019-15 Art. 10(4)", "illegal_marketing"),
    Figure("doxxing_sensitive_50", 50, "whereabouts, communications, credit or property items published",
           "Interpretation 2017-10 Art. 5", "violence_surge"),
    Figure("doxxing_safety_500", 500, "lodging, health or transaction items published",
           "Interpretation 2017-10 Art. 5", "violence_surge"),
    Figure("doxxing_other_5000", 5_000, "other personal information items published",
           "Interpretation 2017-10 Art. 5", "violence_surge"),
    # Read only with `case` events (docs/CONTRACT.md): without them nothing is dealt with.
    Figure("defamation_after_penalty_2y", 730, "days after an administrative penalty for defamation within which "
           "defaming again is serious circumstances", "Interpretation 2013-21 Art. 2(3)", "legal_threshold"),
    Figure("aggregation_unhandled_2y", 730, "days within which a platform's refusals not yet dealt with (as many as "
           "repeat_refusal_2y) have their dissemination figures aggregated", "Interpretation 2019-15 Art. 16",
           "duty_refusal"),
)
BY_ID = {f.id: f for f in TABLE}


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
