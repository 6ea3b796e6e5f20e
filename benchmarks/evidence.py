"""What the evidence log costs: replay with and without the recorder on the same stream.

Prints events/s both ways (the same simulated stream as ``stormwatch bench``, each pass in a
fresh process so neither inherits the other's memory), the evidence bytes per alert version
(the log's entries file over the versions recorded), the log's size, and the time to export
and verify the bundle of the alert with the most entries. Figures, not assertions.
Run: ``python -m benchmarks.evidence [--events 200000] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import base64
import math
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path


def _pass(path: str, with_recorder: bool, queue) -> None:  # in a fresh child process
    from evidence.recorder import new_recorder
    from streams.local import LocalPipeline
    from streams.settings import Settings

    with open(path, "rb") as handle:
        lines = [line.rstrip(b"\n") for line in handle]
    directory = Path(tempfile.mkdtemp(prefix="evidence-bench-")) / "log"
    recorder = new_recorder(directory, base64.b64encode(bytes(32)).decode())[0] if with_recorder else None
    alerts: list = []
    pipeline = LocalPipeline(Settings(), alerts.append, lambda _l: None, recorder)
    started = time.perf_counter()
    for n, line in enumerate(lines):
        pipeline.feed(line, "bench", "bench")
    seconds = time.perf_counter() - started
    result = {"events": len(lines), "seconds": seconds, "alerts": len(alerts),
              "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if recorder is not None:
        recorder.logs.close()
        result.update(_log_figures(recorder, directory, len(alerts)))
    queue.put(result)


def _log_figures(recorder, directory: Path, versions: int) -> dict:
    from evidence.bundle import export, verify

    (log,) = recorder.logs.logs.values()  # the simulator's stream is one platform: one tree
    size = sum(path.stat().st_size for path in directory.rglob("*.jsonl") if path.name != "platforms.jsonl")
    largest = max(log.by_alert, key=lambda aid: len(log.by_alert[aid]))
    started = time.perf_counter()
    bundle = export(log, largest)
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    failures, _ = verify(bundle)
    verify_s = time.perf_counter() - started
    return {"entries": len(log.leaves), "log_bytes": size, "bytes_per_version": size / max(versions, 1),
            "held_mb": recorder.held_bytes / 2**20, "largest": largest, "largest_entries": len(log.by_alert[largest]),
            "bundle_bytes": len(bundle), "export_s": export_s, "verify_s": verify_s, "verified": not failures}


def main() -> None:
    from commands.simulator import SimConfig, simulate_lines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="passes each way; the best is reported")
    args = parser.parse_args()
    minutes = max(1, math.ceil(args.events / (20 * 60)))
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        count = 0
        for line in simulate_lines(SimConfig(seed=args.seed, minutes=minutes)):
            out.write(line + b"\n")
            count += 1
    print(f"{count:,} simulated events ({minutes} minutes, seed {args.seed}); each pass in a fresh process")
    ctx = multiprocessing.get_context("spawn")
    best: dict[bool, dict] = {}
    for _ in range(args.repeat):
        for with_recorder in (False, True):  # alternate, so drift of the machine hits both
            queue = ctx.Queue()
            child = ctx.Process(target=_pass, args=(out.name, with_recorder, queue))
            child.start()
            result = queue.get()
            child.join()
            if with_recorder not in best or result["seconds"] < best[with_recorder]["seconds"]:
                best[with_recorder] = result
    os.unlink(out.name)
    plain, rec = best[False], best[True]
    for name, r in (("replay", plain), ("replay + evidence recorder", rec)):
        print(f"{name:28} {r['events'] / r['seconds']:10,.0f} events/s  ({r['seconds']:.2f} s, "
              f"{r['alerts']} alert versions, peak RSS {r['rss_mb']:.0f} MB)")
    print(f"recorder cost: {100 * (rec['seconds'] / plain['seconds'] - 1):.1f}% more time")
    print(f"evidence log: {rec['entries']:,} entries, {rec['log_bytes'] / 1e6:.2f} MB on disk, "
          f"{rec['bytes_per_version'] / 1e3:.1f} kB per alert version; raw events held at the end: "
          f"{rec['held_mb']:.1f} MiB")
    print(f"largest alert {rec['largest']} ({rec['largest_entries']} entries): bundle {rec['bundle_bytes'] / 1e3:.0f} kB, "
          f"export {rec['export_s'] * 1000:.0f} ms, verify {rec['verify_s'] * 1000:.0f} ms "
          f"({'verified' if rec['verified'] else 'FAILED'})")


if __name__ == "__main__":
    main()
