"""The shipped abuse classifier: loads offline, judges Chinese text, and says the verdict is its own."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.abuse import MODEL, AbuseClassifier, features

EXCERPT = Path(__file__).with_name("data") / "cold_test_excerpt.jsonl"


def test_the_shipped_model_is_small_and_loads_without_a_network() -> None:
    assert MODEL.exists() and MODEL.stat().st_size < 1 << 20
    classifier = AbuseClassifier.load()
    assert classifier.weights.shape == (1 << 18,)


def test_accuracy_on_a_cold_test_excerpt() -> None:
    """300 comments of COLD's test split (not seen in training); the whole split gives 0.799."""
    classifier = AbuseClassifier.load()
    rows = [json.loads(line) for line in EXCERPT.open(encoding="utf-8")]
    right = sum((classifier.classify(r["text"]).label == "offensive") == bool(r["label"]) for r in rows)
    assert right / len(rows) >= 0.72


def test_verdicts_are_marked_as_stormwatchs_own() -> None:
    classifier = AbuseClassifier.load()
    verdict = classifier.classify("这种人又无耻又恶心，滚出去").as_dict()
    assert verdict["source"] == "stormwatch" and verdict["label"] in {"offensive", "safe"}
    assert 0.5 <= verdict["confidence"] <= 1.0
    assert classifier.classify("").label == "safe"


def test_features_fold_width_and_punctuation_and_stay_in_range() -> None:
    assert features("林某，骗子！") == features("林某,骗子!")  # full-width folded, punctuation dropped
    assert features("林某骗子") and all(0 <= k < (1 << 18) for k in features("林某骗子"))
