"""Train and evaluate the abuse classifier on COLD's official split; writes ``abuse_model.npz``.

Run (needs the ``train`` extra, scikit-learn): ``python scripts/train_abuse_model.py``
(``--data`` defaults to ``../shared/data/cold``). C is chosen on dev; the figures printed are
on the untouched test split, beside the COLD paper's COLDetector (about 81% accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a development tool, run from a checkout

from detectors.abuse import BUCKETS, MODEL, AbuseClassifier, features  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cold"


def read(path: Path) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


def matrix(texts: list[str]):  # noqa: ANN201 - a scipy csr_matrix
    from scipy.sparse import csr_matrix  # the `train` extra, like scikit-learn below

    indptr, indices, values = [0], [], []
    for text in texts:
        feats = features(text)
        indices.extend(feats.keys())
        values.extend(feats.values())
        indptr.append(len(indices))
    return csr_matrix((np.array(values, dtype=np.float32), np.array(indices), np.array(indptr)),
                      shape=(len(texts), BUCKETS))


def main() -> None:
    try:  # the `train` extra: never needed by an installed Stormwatch
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
    except ImportError:
        raise SystemExit("training the abuse model needs the train extra: pip install -e '.[train]'") from None
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=MODEL)
    args = parser.parse_args()
    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = (read(args.data / f"{s}.jsonl") for s in ("train", "dev", "test"))
    xs = {name: matrix(texts) for name, texts in (("train", train_x), ("dev", dev_x), ("test", test_x))}
    best = None
    for c in (1.0, 4.0, 16.0, 64.0):
        model = LogisticRegression(C=c, max_iter=2000, solver="liblinear").fit(xs["train"], train_y)
        acc = accuracy_score(dev_y, model.predict(xs["dev"]))
        print(f"C={c:g}: dev accuracy {acc:.4f}")
        if best is None or acc > best[0]:
            best = (acc, c, model)
    _acc, c, model = best
    weights = model.coef_[0].astype(np.float16)
    np.savez_compressed(args.out, weights=weights, bias=np.float32(model.intercept_[0]), threshold=np.float32(0.5))
    # Evaluate the shipped artefact (float16 weights) through the runtime code path.
    runtime = AbuseClassifier.load(args.out)
    started = time.perf_counter()
    predicted = np.array([1 if runtime.classify(t).label == "offensive" else 0 for t in test_x])
    per_post = (time.perf_counter() - started) / len(test_x) * 1e6
    print(f"chosen C={c:g}; COLD test ({len(test_y)} comments): accuracy {accuracy_score(test_y, predicted):.4f}, "
          f"F1 offensive {f1_score(test_y, predicted):.4f}, macro F1 {f1_score(test_y, predicted, average='macro'):.4f}; "
          f"{per_post:.0f} µs per post; artefact {args.out.stat().st_size / 1024:.0f} KiB")
    print("published: COLDetector (BERT fine-tuned on COLD train) about 81% test accuracy (Deng et al. 2022)")


if __name__ == "__main__":
    main()
