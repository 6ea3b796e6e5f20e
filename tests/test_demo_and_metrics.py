"""``stormwatch demo`` with no broker, and the Prometheus series it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from events import Alert, DeadLetter
from streams import metrics
from streams.local import LocalPipeline
from streams.settings import Settings
from tests.support.events import action, lines, order, tick
from tests.support.kafka_broker import free_port


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_events_dead_letters_alerts_and_latency() -> None:
    before = samples(metrics.exposition().decode())
    got: list[Alert] = []
    dead: list[DeadLetter] = []
    pipeline = LocalPipeline(Settings(), got.append, dead.append)
    for n, line in enumerate(lines([order("m1", 0, 5), action("x", "m1", 1, "refused"), tick(9)]).splitlines()):
        pipeline.feed(line, f"t:{n}", topic="metrics-test")
    pipeline.feed(b"{oops", "t:9", topic="metrics-test")
    after = samples(metrics.exposition().decode())

    def delta(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("stormwatch_events_total", topic="metrics-test") == 4
    assert delta("stormwatch_deadletter_total", reason="invalid_json") == 1
    assert delta("stormwatch_alerts_total", kind="order_refused") == 1
    assert delta("stormwatch_alerts_total", kind="order_overdue") == 1
    assert delta("stormwatch_processing_seconds_count", stage="local") == 3


def start_demo(bin_: str, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([bin_, "demo", "--port", str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    return proc, port


def wait_health(port: int, proc: subprocess.Popen, alerts: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
            if health["fed"] and health["alerts"] >= alerts:
                return health
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("demo did not raise its alerts in time")


def test_demo_runs_the_simulator_shows_alerts_and_serves_metrics(stormwatch_bin: str) -> None:
    proc, port = start_demo(stormwatch_bin, "--speed", "0", "--minutes", "30")
    try:
        health = wait_health(port, proc, alerts=3)
        assert health["events"] > 30_000
        exposition = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        values = samples(exposition)
        assert values[("stormwatch_alerts_total", (("kind", "order_refused"),))] == 1
        assert values[("stormwatch_alerts_total", (("kind", "order_overdue"),))] == 2
        assert values[("stormwatch_events_total", (("topic", "simulator"),))] == health["events"]
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode()
    assert "order_refused" in out and "order_overdue" in out
    assert "Still serving" in out


def test_demo_replays_a_file_then_keeps_serving(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "orders.jsonl"
    src.write_bytes(lines([order("d1", 0, 10), tick(11)]) + b"garbage\n")
    proc, port = start_demo(stormwatch_bin, "--replay", str(src), "--speed", "0")
    try:
        wait_health(port, proc, alerts=1)
        time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # still serving
        values = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        assert values[("stormwatch_deadletter_total", (("reason", "invalid_json"),))] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode()
    assert "order_overdue" in out and "dead letter orders.jsonl:3" in out


def test_a_tally_exposes_what_observing_does() -> None:
    """A stage's latency histogram gathers a batch in a ``Tally`` and adds it at once: the
    exposition must be what observing each value gives, bucket edges, the sum, and values past
    the last bound included; values observed since the last flush are not shown yet."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    values = [0.0, 1e-05, 1.1e-05, 0.00005, 0.0003, 0.0005, 0.02, 0.7, 1.0, 1.5, 30.0, 2e-06, 0.001, -0.0]
    registry = CollectorRegistry()
    direct = Histogram("direct", "d", ["stage"], buckets=metrics.LATENCY._upper_bounds[:-1], registry=registry)
    tallied = Histogram("tallied", "d", ["stage"], buckets=metrics.LATENCY._upper_bounds[:-1], registry=registry)
    tally = metrics.Tally(tallied.labels("x"))
    for value in values:
        direct.labels("x").observe(value)
        tally.observe(value)

    def series(name: str) -> dict:
        return {(s.name.removeprefix(name), tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(generate_latest(registry).decode())
                if family.name == name for s in family.samples if not s.name.endswith("_created")}

    assert series("tallied")[("_count", (("stage", "x"),))] == 0  # nothing before the flush
    tally.flush()
    assert series("tallied") == series("direct") and series("direct")[("_count", (("stage", "x"),))] == len(values)
    tally.observe(0.002)
    tally.flush()
    tally.flush()  # a second flush adds nothing
    direct.labels("x").observe(0.002)
    assert series("tallied") == series("direct")
    tally.observe(float("nan"))  # observe adds NaN to the sum and to no bucket
    tally.flush()
    direct.labels("x").observe(float("nan"))
    got, want = series("tallied"), series("direct")
    assert got.keys() == want.keys() and all(got[k] == want[k] or got[k] != got[k] and want[k] != want[k] for k in got)
    assert got[("_count", (("stage", "x"),))] == len(values) + 1
