"""``stormwatch bench``: replay throughput beside raw JSON parsing of the same lines.

Figures, not assertions: every number printed comes from this one run on this machine.
"""

from __future__ import annotations

import gc
import json
import math
import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from events import decode
from streams.local import LocalPipeline
from streams.settings import Settings
from commands.simulator import SimConfig, simulate_lines


@dataclass
class Figure:
    name: str
    seconds: float
    count: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else math.inf


def _timed(name: str, lines: list[bytes], fn: Callable[[bytes], object]) -> Figure:
    gc.collect()
    started = time.perf_counter()
    for line in lines:
        fn(line)
    return Figure(name, time.perf_counter() - started, len(lines))


def _measure(path: str, queue) -> None:  # runs in a fresh child process
    with open(path, "rb") as handle:
        lines = [line.rstrip(b"\n") for line in handle]
    alerts: list = []
    dead: list = []
    pipeline = LocalPipeline(Settings(), alerts.append, dead.append)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = [
        _timed("json.loads (stdlib, baseline)", lines, json.loads),
        _timed("decode (validate to contract models)", lines, lambda line: decode(line, "bench")),
        _timed("replay (decode + every detector)", lines, lambda line: pipeline.feed(line, "bench", "bench")),
    ]
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((figures, pipeline.alerts, len(dead), rss_loaded, rss_peak))


def run_bench(events: int, seed: int = 7, echo: Callable[[str], None] = print) -> dict[str, float]:
    minutes = max(1, math.ceil(events / (20 * 60)))
    echo(f"generating a simulated stream of >= {events:,} events ({minutes} simulated minutes, seed {seed}) ...")
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        count = total_bytes = 0
        for line in simulate_lines(SimConfig(seed=seed, minutes=minutes)):
            out.write(line + b"\n")
            count += 1
            total_bytes += len(line) + 1
    echo(f"{count:,} events, {total_bytes / 1e6:.1f} MB of JSON Lines; timing in a fresh process")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_measure, args=(out.name, queue))
    child.start()
    figures, alerts, dead, rss_loaded, rss_peak = queue.get()
    child.join()
    os.unlink(out.name)

    base, replay = figures[0], figures[-1]
    echo("")
    echo(f"{'stage':40} {'seconds':>9} {'events/s':>12} {'vs json.loads':>14}")
    for fig in figures:
        echo(f"{fig.name:40} {fig.seconds:9.2f} {fig.rate:12,.0f} {fig.rate / base.rate:13.2f}x")
    echo("")
    echo(f"replay: {replay.rate:,.0f} events/s = {replay.rate / base.rate:.2f} of raw json.loads "
         f"({base.rate / replay.rate:.1f}x slower); {alerts} alert versions, {dead} dead letters")
    echo(f"measuring process: {rss_loaded / 1024:.0f} MB resident with the input loaded, "
         f"{rss_peak / 1024:.0f} MB peak after all passes")
    return {"events": count, "json_loads_per_s": base.rate, "replay_per_s": replay.rate,
            "ratio": replay.rate / base.rate}
