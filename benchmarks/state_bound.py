"""Bounded state, shown: the water army's live state keys and the process's memory at the end
of each day of a multi-day stream at a steady posting rate.

The same generator as the coordination benchmark (``../shared/tools/coord_synth.py``), spread
over several days. If state is bounded by the detector's horizon and not by the stream's
length, the key count levels off after the longest horizon (pairs and account counts: four
half-lives, four days by default) and memory with it. Run:
``python -m benchmarks.state_bound --days 6 --per-day 100000``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.coordination import SHARED, synth_to_jsonl

DAY = 86400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--per-day", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ["STORMWATCH_DETECTORS"] = "water_army"
    from events import decode
    from streams.local import LocalPipeline, read_lines
    from streams.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "days"
        subprocess.run([sys.executable, str(SHARED / "tools" / "coord_synth.py"), "--posts",
                        str(args.days * args.per_day), "--accounts", "20000", "--span", str(args.days * DAY),
                        "--seed", str(args.seed), "--out", str(base)], check=True, capture_output=True)
        jsonl = Path(f"{base}.jsonl")
        synth_to_jsonl(Path(f"{base}.csv"), jsonl)
        pipeline = LocalPipeline(Settings(), lambda _a: None, lambda _d: None)
        state = pipeline.engine.stages[0].state
        start = day = None
        print(f"{'day':>4} {'posts so far':>13} {'live state keys':>16} {'peak RSS MB':>12}")
        posts = 0
        for number, line in read_lines(jsonl):
            epoch = decode(line, "peek").epoch
            start = epoch if start is None else start
            if day is not None and int((epoch - start) // DAY) > day:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{day + 1:>4} {posts:>13,} {len(state):>16,} {rss:>12.0f}", flush=True)
            day = int((epoch - start) // DAY)
            pipeline.feed(line, f"days:{number}")
            posts += 1
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{day + 1:>4} {posts:>13,} {len(state):>16,} {rss:>12.0f}")


if __name__ == "__main__":
    main()
