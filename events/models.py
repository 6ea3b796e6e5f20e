"""The wire contract (../shared/CONTRACT.md) as pydantic models.

Validation is strict on purpose: a string where a number belongs, a timestamp without an
offset or an unknown enum value is bad input and goes to the dead-letter output, instead of
being guessed at. Unknown extra fields are kept (``extra="allow"``) because the contract
promises that platforms may add fields.

Every number, time, list and string has a bound (docs/CONTRACT.md, "Bounds"), so that one
hostile event can neither move event time by years nor grow detector state without limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator,
)

MAX_TEXT = 10_000
MAX_COUNT = 2**53 - 1  # the largest integer every JSON consumer (JavaScript too) reads exactly
MAX_LIST = 100  # targets, urls, hashtags, mentions, labels, measures
MAX_ITEMS = 1_000  # items of an order or a platform action
MAX_ELEMENT = 2_048  # characters of one url, hashtag or mention
MAX_DEADLINE_AFTER = timedelta(days=3653)  # about 10 years
# Unix time from its epoch (synthetic benchmark streams start there) to before the year 2100:
# year 1 or 9999 with an offset is year 0 or 10000 in UTC, which Python cannot format.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)  # exclusive

Id = Annotated[str, Field(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Timestamp = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
Element = Annotated[str, Field(max_length=MAX_ELEMENT)]
Short = Annotated[str, Field(max_length=256)]


def _cap(text: str) -> str:
    return text[:MAX_TEXT]


Text = Annotated[str, AfterValidator(_cap)]

Label = Literal["insult", "defamation", "doxxing", "sexual_rumor", "threat", "incitement", "illegal_other"]
HARMFUL_LABELS: frozenset[str] = frozenset(get_args(Label))  # every platform label names harmful content

ReportCategory = Literal["insult", "defamation", "doxxing", "sexual_rumor", "threat", "incitement", "other"]
Measure = Literal[
    "remove_content", "suspend_account", "stop_amplification", "preserve_evidence", "rectify_system", "report_back"
]
ActionKind = Literal[
    "acknowledged", "content_removed", "account_suspended", "amplification_stopped", "evidence_preserved",
    "completed", "refused", "extension_requested", "disputed",
]


class once:
    """``functools.cached_property`` without its lock: Python 3.11 takes an RLock on every first
    read, and ``epoch`` is read first once per event. Models are frozen and read by one thread."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)  # the instance's copy hides this from now on
        return value


class Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, ignored_types=(once,))


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
    device_id: Short | None = None
    ip_prefix: Short | None = None


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

    @once  # read several times per event by the engine and detectors
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
    urls: list[Element] = Field(default_factory=list, max_length=MAX_LIST)
    hashtags: list[Element] = Field(default_factory=list, max_length=MAX_LIST)
    mentions: list[Element] = Field(default_factory=list, max_length=MAX_LIST)
    targets: list[Target] = Field(default_factory=list, max_length=MAX_LIST)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LIST)
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
    targets: list[Target] = Field(default_factory=list, max_length=MAX_LIST)
    category: ReportCategory
    reporter_is_target: bool = False
    text: Text = ""


class Order(Event):
    type: Literal["order"]
    order_id: Id
    regulator: Id
    deadline: Timestamp
    legal_basis: Text = ""
    measures: list[Measure] = Field(default_factory=list, max_length=MAX_LIST)
    items: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)
    case_id: Id | None = None

    @field_validator("deadline")
    @classmethod
    def _deadline_within_years(cls, deadline: datetime, info: ValidationInfo) -> datetime:
        """A deadline decades away would keep the order's state (and its timer) for decades."""
        ts = info.data.get("ts")
        if ts is not None and deadline > ts + MAX_DEADLINE_AFTER:
            raise ValueError("a deadline is at most 10 years (3653 days) after ts")
        return deadline

    @once
    def deadline_epoch(self) -> float:
        return self.deadline.timestamp()


class PlatformAction(Event):
    type: Literal["platform_action"]
    action_id: Id
    order_id: Id | None = None
    action: ActionKind
    items: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)
    note: Text = ""


CaseAction = Literal["penalty", "warning", "case_opened"]
CaseConduct = Literal["defamation", "insult", "online_violence", "duty_refusal", "illegal_use", "other"]


class CaseSubject(Model):
    type: Literal["account", "platform"]
    id: Id


class Case(Event):
    """A sanction or case about an account or a platform (optional input).

    Why: the interpretations aggregate conduct "not yet dealt with" (未经处理: 2013-21 Art. 4,
    2019-15 Art. 16) and make a repeat after a penalty serious (2013-21 Art. 2(3)); without
    this event Stormwatch cannot tell handled conduct from unhandled. ``decided_at`` (default
    ``ts``) is when the penalty was decided or the case opened; the subject's conduct up to it
    is taken as dealt with. A platform case may only name the event's own platform: one
    platform never changes another's findings.
    """

    type: Literal["case"]
    case_id: Id
    subject: CaseSubject
    action: CaseAction
    conduct: CaseConduct = "other"
    authority: Id | None = None
    legal_basis: Text = ""
    decided_at: Timestamp | None = None

    @field_validator("subject")
    @classmethod
    def _own_platform(cls, subject: CaseSubject, info: ValidationInfo) -> CaseSubject:
        if subject.type == "platform" and subject.id != info.data.get("platform", subject.id):
            raise ValueError("a platform case names the event's own platform")
        return subject

    @field_validator("decided_at")
    @classmethod
    def _decided_by_ts(cls, decided_at: datetime | None, info: ValidationInfo) -> datetime | None:
        ts = info.data.get("ts")
        if decided_at is not None and ts is not None and decided_at > ts:
            raise ValueError("a case is sent once decided, so decided_at is at most ts")
        return decided_at

    @property
    def decided_epoch(self) -> float:
        return (self.decided_at or self.ts).timestamp()


class Tick(BaseModel):
    """Advances event time with no data. Only ``ts`` is required."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, ignored_types=(once,))
    type: Literal["tick"]
    ts: Timestamp
    event_id: Id | None = None
    platform: Id | None = None

    @once  # read several times per event by the engine and detectors
    def epoch(self) -> float:
        return self.ts.timestamp()


class CascadeFinding(Event):
    """What ``CascadeWatch`` hands on about one item to the author-keyed ``Cascades``: never
    an input (no topic takes it), it travels only between those two stages.

    ``event_id`` is the triggering event's id, the item's part in it and the item's id
    (``detectors.cascades.finding_id``): unique per event and item (the engine's seen-set
    drops repeats by it) and sorting where the event that caused it did.
    ``item`` is the snapshot ``detectors.cascades`` documents; it is checked by the code that
    wrote it, so it stays a plain dict here."""

    type: Literal["cascade_finding"]
    event_id: Annotated[str, Field(min_length=1, max_length=520)]
    author: Id | None = None
    item: dict[str, Any]


LongId = Annotated[str, Field(min_length=1, max_length=4096)]  # ids a stage builds from an event id and more


class ArmyAct(Event):
    """A post as the water army's object stage needs it (``detectors.water_army``): its objects
    (a text as its LSH bands), its signature, aims and flags, and its author's figures (the
    ``card``). Made by ``ArmyAccounts`` where the post enters; never an input. ``event_id``
    is the post's."""

    type: Literal["army_act"]
    post_id: Id
    account_id: Id
    objects: list[str]
    sig: str | None = None
    aims: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    card: dict[str, Any]


class CoAction(Event):
    """One post's act on one object and the accounts that acted on it shortly before
    (``partners``: ``[account, ts, post_id, aims, card]``, the most recent), from the object
    stage to the pair stage. ``event_id``: the post's, the object and its length
    (``detectors.water_army.part_id``)."""

    type: Literal["co_action"]
    event_id: LongId
    post_id: Id
    account_id: Id
    object: str
    weight: float
    aims: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    card: dict[str, Any]
    partners: list[list[Any]]


class StrongPair(Event):
    """Two accounts that have just become a strong pair, from the pair stage to the campaigns:
    the occasion's objects and posts, and both accounts' figures (``cards``)."""

    type: Literal["strong_pair"]
    event_id: LongId
    accounts: list[Id] = Field(min_length=2, max_length=2)
    objects: list[str]
    posts: list[str]
    flags: list[str] = Field(default_factory=list)
    aims: list[str] = Field(default_factory=list)
    cards: dict[str, dict[str, Any]]


class StrongPairs(Event):
    """The strong pairs one partition of the pair stage found in one interval of event time
    (``detectors.water_army``: ``assemble_every_s``), handed to the campaigns as one event, so
    the one stage per platform takes a batch per partition and interval, not an event per pair.
    ``ts``: the interval's end; ``pairs``: in the order found, at most its ``pairs_per_batch``
    (a bound here too: a batch is one stage entry and one state record)."""

    type: Literal["strong_pairs"]
    event_id: LongId
    pairs: list[StrongPair] = Field(max_length=1000)


InputEvent = Annotated[Union[Post, Engagement, Report, Order, PlatformAction, Case, Tick], Field(discriminator="type")]
# What a stage topic carries: the inputs and the events one stage hands to another.
StageEvent = Annotated[Union[Post, Engagement, Report, Order, PlatformAction, Case, Tick, CascadeFinding, ArmyAct,
                             CoAction, StrongPair, StrongPairs], Field(discriminator="type")]
AnyEvent = (Post | Engagement | Report | Order | PlatformAction | Case | Tick | CascadeFinding | ArmyAct | CoAction
            | StrongPair | StrongPairs)

# The contract's input topics, by event type. Ticks may arrive on any topic.
TOPIC_BY_TYPE: dict[str, str] = {
    "post": "posts",
    "engagement": "engagement",
    "report": "reports",
    "order": "orders",
    "platform_action": "platform-actions",
    # Decisions about conduct travel with the regulators' orders: no new topic, so no new source
    # the platform stage waits for and nothing to create in a running deployment.
    "case": "orders",
}
INPUT_TOPICS: tuple[str, ...] = tuple(dict.fromkeys(TOPIC_BY_TYPE.values()))


def format_ts(epoch: float) -> str:
    """RFC 3339 in UTC with a ``Z``; a fraction only as long as it needs to be."""
    text = datetime.fromtimestamp(epoch, timezone.utc).isoformat().removesuffix("+00:00")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"
