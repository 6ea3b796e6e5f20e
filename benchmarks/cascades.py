"""Cascade forecasts on the real Twitter15/16 propagation trees (Ma et al. 2017).

Each cascade's reshares (retweets and replies; exact duplicate edges and negative delays
dropped) are a stream. SEISMIC (``detectors.seismic.predict``, the function the cascade
detector calls) forecasts the final number of reshares from what was seen after one hour and
after 10% of the cascade's lifetime; the error is the median absolute percentage error (APE)
against the true final size, beside the published SEISMIC figure (about 15% median relative
error one hour in, 166,076 Twitter cascades of >= 50 retweets, with real follower counts).
These trees carry no follower counts: every reshare gets the same n_i = n* = 100 (said in the
output). The per-event cost is measured by replaying every reshare as a contract ``post``
through the cascade detector. Run: ``python -m benchmarks.cascades``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import orjson

from detectors import seismic
from detectors.cascades import cascade_detectors
from events import decode, format_ts
from streams.engine import Engine

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "twitter15_16_propagation" / "cascades.jsonl.gz"
PUBLISHED = "SEISMIC (KDD 2015): ~15% median relative error of final size after 1 hour (166,076 Twitter cascades)"


def reshare_times(cascade: dict) -> np.ndarray:
    """Seconds after the source tweet of each distinct reshare edge."""
    seen, times = set(), []
    for edge in cascade["edges"]:
        if edge[0] is None:
            continue  # the ROOT line
        key = tuple(edge)
        delay = edge[5]
        if key in seen or delay is None or delay < 0:
            continue
        seen.add(key)
        times.append(delay * 60.0)
    return np.sort(np.asarray(times))


def ape(predicted: float, final: int) -> float:
    return math.inf if math.isinf(predicted) else abs(predicted - final) / final


def evaluate(cascades: list[dict], followers: float = 100.0) -> dict:
    rows = {"1h": [], "10%": [], "1h_no_growth": [], "10%_no_growth": []}
    for cascade in cascades:
        times = reshare_times(cascade)
        if len(times) < 10:
            continue
        final = len(times)
        life = float(times[-1])
        full = np.concatenate([[0.0], times])
        fol = np.full(len(full), followers)
        for name, at in (("1h", 3600.0), ("10%", 0.1 * life)):
            if at >= life:
                continue  # nothing left to forecast
            predicted = seismic.predict(full, fol, at, n_star=followers) - 1  # reshares, not the original
            rows[name].append(ape(predicted, final))
            rows[f"{name}_no_growth"].append(ape(float(np.count_nonzero(times <= at)), final))
    summary = {}
    for name, errors in rows.items():
        finite = [e for e in errors if math.isfinite(e)]
        summary[name] = {"cascades": len(errors), "median_ape": statistics.median(errors) if errors else None,
                         "supercritical_share": round(1 - len(finite) / len(errors), 3) if errors else None,
                         "median_ape_finite": statistics.median(finite) if finite else None}
    return summary


def per_event_cost(cascades: list[dict]) -> dict:
    """Replay every reshare through the cascade detector; seconds per event."""
    lines = []
    base = 1_600_000_000.0
    for c_index, cascade in enumerate(cascades):
        root = cascade["root_tweet_id"]
        t0 = base + c_index * 60.0
        lines.append((t0, orjson.dumps({"type": "post", "event_id": f"r{root}", "platform": "twitter", "ts": format_ts(t0),
                                        "post_id": root, "account_id": "src", "kind": "original",
                                        "labels": ["defamation"] if cascade["label"] == "false" else []})))
        for i, delay in enumerate(reshare_times(cascade)):
            ts = t0 + delay
            lines.append((ts, orjson.dumps({"type": "post", "event_id": f"{root}-{i}", "platform": "twitter",
                                            "ts": format_ts(ts), "post_id": f"{root}-{i}", "account_id": f"u{i}",
                                            "kind": "repost", "parent_id": root})))
    lines.sort(key=lambda x: x[0])
    engine = Engine(cascade_detectors())
    alerts = 0
    started = time.perf_counter()
    for _ts, line in lines:
        alerts += len(engine.process(decode(line, "bench")))
    elapsed = time.perf_counter() - started
    return {"events": len(lines), "seconds": elapsed, "us_per_event": elapsed / len(lines) * 1e6, "alerts": alerts,
            "failures": len(engine.failures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "cascades.json")
    args = parser.parse_args()
    with gzip.open(args.data, "rt", encoding="utf-8") as handle:
        cascades = [json.loads(line) for line in handle]
    print(f"{len(cascades):,} cascades from {args.data.name}; follower counts unknown: n_i = n* = 100")
    errors = evaluate(cascades)
    for name, row in errors.items():
        median = row["median_ape"]
        print(f"  forecast at {name:14} cascades {row['cascades']:5}  median APE "
              f"{'inf' if median is None or math.isinf(median) else f'{median:.1%}'}"
              f"  supercritical {row['supercritical_share']:.1%}  median APE of finite "
              f"{row['median_ape_finite']:.1%}" if row["median_ape_finite"] is not None else "")
    print(f"  published: {PUBLISHED}")
    cost = per_event_cost(cascades)
    print(f"  per-event cost through the cascade detector: {cost['us_per_event']:.1f} µs "
          f"({cost['events']:,} events in {cost['seconds']:.1f} s, {cost['alerts']} alerts, {cost['failures']} failures)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"forecast": errors, "cost": cost, "published": PUBLISHED}, indent=1))


if __name__ == "__main__":
    main()
