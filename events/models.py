"""The wire contract (../shared/CONTRACT.md) as pydantic models.

Validation is strict on purpose: a string where a number belongs, a timestamp without an
offset or an unknown enum value is bad input and goes to the dead-letter output, instead of
being guessed at. Unknown extra fields are kept (``extra="allow"``) because the contract
promises that platforms may add fields.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

MAX_TEXT = 10_000

Id = Annotated[str, Field(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0)]
Timestamp = AwareDatetime


def _cap(text: str) -> str:
    return text[:MAX_TEXT]


Text = Annotated[str, AfterValidator(_cap)]

Label = Literal["insult", "defamation", "doxxing", "sexual_rumor", "threat", "incitement", "illegal_other"]
ReportCategory = Literal["insult", "defamation", "doxxing", "sexual_rumor", "threat", "incitement", "other"]
Measure = Literal[
    "remove_content", "suspend_account", "stop_amplification", "preserve_evidence", "rectify_system", "report_back"
]
ActionKind = Literal[
    "acknowledged", "content_removed", "account_suspended", "amplification_stopped", "evidence_preserved",
    "completed", "refused", "extension_requested", "disputed",
]


class Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Target(Model):
    id: Id
    minor: bool = False
    disabled: bool = False
    public_figure: bool = False


class Account(Model):
    created_at: Timestamp | None = None
    followers: Count = 0
    verified: bool = False
    public_account: bool = False
    platform_operated: bool = False
    device_id: str | None = None
    ip_prefix: str | None = None


class Item(Model):
    """What an order or action covers: exactly one of a post, an account or a hashtag."""

    post_id: Id | None = None
    account_id: Id | None = None
    hashtag: Id | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "Item":
        if sum(v is not None for v in (self.post_id, self.account_id, self.hashtag)) != 1:
            raise ValueError("an item names exactly one of post_id, account_id, hashtag")
        return self

    @property
    def key(self) -> str:
        """A stable string for the item, e.g. ``post:p1``."""
        if self.post_id is not None:
            return f"post:{self.post_id}"
        if self.account_id is not None:
            return f"account:{self.account_id}"
        return f"hashtag:{self.hashtag}"


class Event(Model):
    """Fields every input has. ``epoch`` is the event time in Unix seconds, used by state."""

    event_id: Id
    platform: Id
    ts: Timestamp

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()


class Post(Event):
    type: Literal["post"]
    post_id: Id
    account_id: Id
    kind: Literal["original", "repost", "comment", "reply"]
    parent_id: Id | None = None
    root_id: Id | None = None
    text: Text = ""
    urls: list[str] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)
    labels: list[Label] = Field(default_factory=list)
    synthetic: bool = False
    account: Account | None = None


class Engagement(Event):
    type: Literal["engagement"]
    post_id: Id
    views: Count = 0
    reposts: Count = 0
    comments: Count = 0
    likes: Count = 0
    reach_accounts: Count = 0


class Report(Event):
    type: Literal["report"]
    report_id: Id
    reporter_id: Id
    post_id: Id | None = None
    account_id: Id | None = None
    targets: list[Target] = Field(default_factory=list)
    category: ReportCategory
    reporter_is_target: bool = False
    text: Text = ""


class Order(Event):
    type: Literal["order"]
    order_id: Id
    regulator: Id
    deadline: Timestamp
    legal_basis: Text = ""
    measures: list[Measure] = Field(default_factory=list)
    items: list[Item] = Field(default_factory=list)
    case_id: Id | None = None

    @property
    def deadline_epoch(self) -> float:
        return self.deadline.timestamp()


class PlatformAction(Event):
    type: Literal["platform_action"]
    action_id: Id
    order_id: Id | None = None
    action: ActionKind
    items: list[Item] = Field(default_factory=list)
    note: Text = ""


class Tick(BaseModel):
    """Advances event time with no data. Only ``ts`` is required."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    type: Literal["tick"]
    ts: Timestamp
    event_id: Id | None = None
    platform: Id | None = None

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()


InputEvent = Annotated[Union[Post, Engagement, Report, Order, PlatformAction, Tick], Field(discriminator="type")]
AnyEvent = Post | Engagement | Report | Order | PlatformAction | Tick

# The contract's input topics, by event type. Ticks may arrive on any topic.
TOPIC_BY_TYPE: dict[str, str] = {
    "post": "posts",
    "engagement": "engagement",
    "report": "reports",
    "order": "orders",
    "platform_action": "platform-actions",
}
INPUT_TOPICS: tuple[str, ...] = tuple(TOPIC_BY_TYPE.values())


def format_ts(epoch: float) -> str:
    """RFC 3339 in UTC with a ``Z``; a fraction only as long as it needs to be."""
    text = datetime.fromtimestamp(epoch, timezone.utc).isoformat().removesuffix("+00:00")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"
