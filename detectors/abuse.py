"""Stormwatch's own abuse classifier, for Chinese posts that arrive without platform labels.

A linear model over hashed character 1-3-grams, trained on COLD (Deng et al., EMNLP 2022,
official split) by ``python scripts/train_abuse_model.py``. Its verdict is Stormwatch's, never a
platform's: it is reported as ``{"label": "offensive", "confidence": p, "source": "stormwatch"}``
and never written into a post's ``labels``. The weights ship as a small file beside this
module; nothing is downloaded at run time.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.text import normalise

BUCKETS = 1 << 18
MODEL = Path(__file__).with_name("abuse_model.npz")


def features(text: str) -> dict[int, float]:
    """Hashed character 1-3-grams of the normalised text, L2-normalised counts."""
    norm = normalise(text)
    counts: dict[int, float] = {}
    for n in (1, 2, 3):
        for i in range(len(norm) - n + 1):
            gram = norm[i:i + n].encode()
            bucket = zlib.crc32(gram, n) % BUCKETS
            counts[bucket] = counts.get(bucket, 0.0) + 1.0
    norm2 = math.sqrt(sum(v * v for v in counts.values())) or 1.0
    return {k: v / norm2 for k, v in counts.items()}


@dataclass(frozen=True)
class Verdict:
    label: str  # "offensive" or "safe"
    confidence: float  # probability of that label
    source: str = "stormwatch"

    def as_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 4), "source": self.source}


class AbuseClassifier:
    def __init__(self, weights: np.ndarray, bias: float, threshold: float = 0.5) -> None:
        self.weights = weights.astype(np.float32)
        self.bias = float(bias)
        self.threshold = threshold

    @classmethod
    def load(cls, path: Path = MODEL) -> "AbuseClassifier":
        data = np.load(path)
        return cls(data["weights"], float(data["bias"]), float(data["threshold"]))

    def probability(self, text: str) -> float:
        feats = features(text)
        if not feats:
            return 0.0
        idx = np.fromiter(feats.keys(), dtype=np.int64, count=len(feats))
        val = np.fromiter(feats.values(), dtype=np.float32, count=len(feats))
        z = float(self.weights[idx] @ val) + self.bias
        return 1.0 / (1.0 + math.exp(-z))

    def classify(self, text: str) -> Verdict:
        p = self.probability(text)
        return Verdict("offensive", p) if p >= self.threshold else Verdict("safe", 1.0 - p)
