"""Validation: the contract's bad-input list, documented defaults, kept extras, capped text."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import DeadLetter, Post, decode
from events.models import MAX_TEXT
from tests.support.events import order, post

GOOD_POST = post("p1", 0)


def bad(**changes) -> bytes:
    event = dict(GOOD_POST)
    for key, value in changes.items():
        if value is ...:
            event.pop(key)
        else:
            event[key] = value
    return orjson.dumps(event)


BAD_INPUTS = [
    # (raw, reason, text the error must contain: the field and the problem)
    (b"not json at all", "invalid_json", "not valid JSON"),
    (b'{"type": "post", "post_id": ', "invalid_json", "not valid JSON"),
    (b"\xff\xfe{}", "invalid_json", "not valid JSON"),
    (b'{"type":"post","text":"\\ud800"}', "invalid_json", "not valid JSON"),
    (b"[1, 2, 3]", "not_object", "not a JSON object"),
    (b'"a string"', "not_object", "not a JSON object"),
    (b"42", "not_object", "not a JSON object"),
    (b'{"post_id": "p1"}', "missing_type", "type: missing"),
    (bad(type="tweet"), "unknown_type", "type: unknown event type 'tweet'"),
    (bad(post_id=...), "missing_field", "post.post_id: Field required"),
    (bad(account_id=17), "invalid_field", "post.account_id: Input should be a valid string"),
    (bad(post_id=""), "invalid_field", "post.post_id: String should have at least 1 character"),
    (bad(post_id="x" * 257), "invalid_field", "post.post_id: String should have at most 256 characters"),
    (bad(kind="story"), "invalid_field", "post.kind: Input should be 'original', 'repost', 'comment' or 'reply'"),
    (bad(ts="2026-11-30T08:15:02"), "invalid_field", "post.ts: Input should have timezone info"),
    (bad(ts="yesterday"), "invalid_field", "post.ts: Input should be a valid datetime"),
    (bad(ts=1764460800), "invalid_field", "post.ts: Input should be a valid datetime"),
    (bad(ts=...), "missing_field", "post.ts: Field required"),
    (bad(labels=["rude"]), "invalid_field", "post.labels.0: Input should be"),
    (bad(synthetic="yes"), "invalid_field", "post.synthetic: Input should be a valid boolean"),
    (bad(targets=[{"minor": True}]), "missing_field", "post.targets.0.id: Field required"),
    (bad(account={"followers": -5}), "invalid_field", "post.account.followers: Input should be greater than or equal to 0"),
    (orjson.dumps({"type": "engagement", "event_id": "e", "platform": "w", "ts": "2026-11-30T00:00:00Z",
                   "post_id": "p", "views": -1}), "invalid_field", "engagement.views: Input should be greater than or equal to 0"),
    (orjson.dumps({"type": "engagement", "event_id": "e", "platform": "w", "ts": "2026-11-30T00:00:00Z",
                   "post_id": "p", "views": "12"}), "invalid_field", "engagement.views: Input should be a valid integer"),
    (orjson.dumps({**order("o1", 0, 60), "deadline": None}), "invalid_field", "order.deadline: Input should be a valid datetime"),
    (orjson.dumps({**order("o1", 0, 60), "measures": ["apologise"]}), "invalid_field", "order.measures.0"),
    (orjson.dumps({**order("o1", 0, 60), "items": [{"post_id": "p", "hashtag": "h"}]}), "invalid_field",
     "order.items.0: Value error, an item names exactly one"),
    (b'{"type": "post", "x": "' + b"a" * (1 << 20) + b'"}', "too_large", "over the 1 MiB limit"),
]


@pytest.mark.parametrize("raw,reason,error", BAD_INPUTS, ids=[f"{i}-{r}" for i, (_, r, _) in enumerate(BAD_INPUTS)])
def test_bad_input_becomes_a_dead_letter_naming_the_field(raw: bytes, reason: str, error: str) -> None:
    letter = decode(raw, "test:1")
    assert isinstance(letter, DeadLetter), letter
    assert letter.reason == reason
    assert error in letter.error, letter.error
    assert letter.source == "test:1"
    record = letter.to_record()
    assert set(record) >= {"error", "raw", "source", "ts"}
    assert len(record["raw"].encode()) <= 64 * 1024 + 4


def test_documented_defaults_and_unknown_fields_are_kept() -> None:
    event = decode(orjson.dumps({**GOOD_POST, "lang": "zh", "extra": {"a": 1}}), "t")
    assert isinstance(event, Post)
    assert (event.text, event.urls, event.hashtags, event.targets, event.labels, event.synthetic) == ("", [], [], [], [], False)
    assert event.model_extra == {"lang": "zh", "extra": {"a": 1}}
    with_account = decode(bad(account={"device_id": "d1"}), "t")
    assert with_account.account.followers == 0 and with_account.account.public_account is False


def test_oversize_text_is_cut_not_fatal() -> None:
    event = decode(bad(text="网" * (MAX_TEXT + 500)), "t")
    assert isinstance(event, Post)
    assert len(event.text) == MAX_TEXT


def test_odd_but_valid_unicode_is_kept() -> None:
    text = "\u200b\u202e零宽与反向\U0001F600\u0000end"
    event = decode(bad(text=text), "t")
    assert isinstance(event, Post) and event.text == text


def test_timestamps_with_any_offset_compare_as_instants() -> None:
    a = decode(bad(ts="2026-11-30T08:00:00+08:00"), "t")
    b = decode(bad(ts="2026-11-30T00:00:00Z"), "t")
    assert a.epoch == b.epoch


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = decode(raw, "fuzz")
    assert isinstance(result, DeadLetter) or result.type in {"tick"}  # bytes almost never form a valid event
    if isinstance(result, DeadLetter):
        assert result.error and result.reason


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from([GOOD_POST, order("o1", 0, 30)]), field=st.text(max_size=10), value=json_values)
def test_mutated_events_are_valid_or_dead_lettered_with_a_field(base: dict, field: str, value) -> None:
    mutated = {**base}
    key = field if field and not field.isspace() else next(iter(base))
    mutated[key] = value
    result = decode(json.dumps(mutated).encode(), "fuzz")
    if isinstance(result, DeadLetter):
        assert result.reason in {"invalid_field", "missing_field", "unknown_type", "missing_type", "not_object"}
        assert ":" in result.error  # "<field>: <problem>"
    else:
        assert result.type == base["type"]
