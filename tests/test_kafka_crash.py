"""Crash safety end to end (issue 13): two RocksDB workers, 4 partitions, a simulated stream of
about 19,000 events produced by ``stormwatch produce``; the final alerts on ``alerts`` equal
``replay``'s (latest version per ``alert_id``, every field), with no failure and after one
worker is killed with SIGKILL and started again. ``python -m benchmarks.recovery`` runs the
same scenario and prints how long it took. A run that only misses alerts after the watchdog or
the gap check re-read something is tried once more, and both runs are printed: the signature of
a batch's state lost at a rebalance or a stop, whose cause (Faust's producer buffer) was found
and fixed on 2026-12-02 (docs/KNOWN-PROBLEMS.md); the retry stays as a net until many runs back
the fix. A changed alert is never retried."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.crash import (Pair, TopicReader, diff, explain, latest, replay_alerts, versions, wait_for,
                                 write_stream)
from tests.support.receiver import Receiver

pytestmark = pytest.mark.kafka

MINUTES, PER_S = 20, 15.0  # about 19,000 events; about 40 s through two workers on this machine
# A busy CI runner (2 cores shared by the broker, both workers and the test) once needed over
# four minutes for what takes one on a quiet machine: wait up to TIMEOUT for the alerts, but give
# up after IDLE seconds with no alert record at all (the platform stage can buffer for a minute).
TIMEOUT, IDLE = 600.0, 150.0


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> tuple[Path, list[dict]]:
    import sys

    work = tmp_path_factory.mktemp("crash-stream")
    src = work / "events.jsonl"
    assert write_stream(src, MINUTES, PER_S) > 15_000
    return src, replay_alerts(str(Path(sys.executable).with_name("stormwatch")), src, work)


def _dead_letters(kafka_broker, pair: Pair) -> list[dict]:
    reader = TopicReader(kafka_broker, pair.topic("deadletter"))
    try:
        for _ in range(4):
            reader.poll()
    finally:
        reader.close()
    return reader.records


def test_two_rocksdb_workers_give_replays_alerts(kafka_broker, stormwatch_bin: str, tmp_path: Path, stream) -> None:
    for attempt in (1, 2):
        src, expected = stream
        pair = Pair(kafka_broker, stormwatch_bin, tmp_path / f"run{attempt}").start()
        alerts = TopicReader(kafka_broker, pair.topic("alerts"))
        try:
            pair.workers[0].produce(src)
            equal = wait_for(alerts, latest(expected), TIMEOUT, idle=IDLE)
            dead = _dead_letters(kafka_broker, pair)
            counters = _counters(pair)
        finally:
            alerts.close()
            pair.stop()
        outcome = {"diff": diff(latest(alerts.records), latest(expected)), "impure": impure(alerts.records, expected),
                   "webhooks_missing": 0, "detector_errors": sum(1 for d in dead if d.get("reason") == "detector_error")}
        print(f"two workers, run {attempt}: {outcome} {counters}")
        if attempt == 1 and not equal and known_open_loss(outcome, counters):
            continue  # the known Faust fetch problem (docs/KNOWN-PROBLEMS.md): once more, on fresh topics
        assert equal, explain(alerts, expected, dead, counters)
        assert outcome["impure"] == [] and outcome["detector_errors"] == 0, outcome
        return


def known_open_loss(outcome: dict, counters: dict[str, float]) -> bool:
    """Only alerts missing, none changed or impure, no detector error, and the watchdog or the gap
    check re-read something: the signature of the two open losses in docs/KNOWN-PROBLEMS.md (a
    batch's state lost at a rebalance; a re-read Faust never fetches). Such a run is retried
    once on fresh topics and both are printed; a changed or impure alert never is."""
    return (outcome["diff"]["changed"] == 0 and outcome["diff"]["extra"] == 0 and outcome["impure"] == []
            and outcome["detector_errors"] == 0 and sum(counters[name] for name in REREADS) > 0)


REREADS = ("stormwatch_watchdog_rereads", "stormwatch_gaps_reread")  # a retry needs one of these
COUNTERS = (*REREADS, "stormwatch_hole_messages_read_back")  # printed; holes read back do not earn a retry


def _counters(pair: Pair) -> dict[str, float]:
    """The gap and watchdog counters of the running workers (a killed worker's died with it)."""
    return {name: pair.counter(name) for name in COUNTERS}


def impure(records: list[dict], expected: list[dict]) -> list[tuple[str, int]]:
    """(alert_id, version) of the records whose content is not replay's for that version."""
    by_version = {(a["alert_id"], a["version"]): a for a in expected}
    return [(a["alert_id"], a["version"]) for a in records if by_version.get((a["alert_id"], a["version"])) != a][:5]


def test_a_worker_killed_partway_and_restarted_gives_replays_alerts_and_every_webhook(
        kafka_broker, stormwatch_bin: str, tmp_path: Path, stream) -> None:
    """The rare changed alert (issue 13) was a batch's state not atomic across a kill: never
    retried. Only a run with the signature of the open losses (:func:`known_open_loss`) is tried once
    more; on a failure the message says which alert differs and how (see :func:`explain`)."""
    for attempt in (1, 2):
        outcome, why, counters = _kill_and_restart(kafka_broker, stormwatch_bin, tmp_path / f"run{attempt}", stream)
        print(f"kill-and-restart, run {attempt}: {outcome} {counters}")
        clean = outcome == {"diff": {"missing": 0, "extra": 0, "changed": 0}, "impure": [], "webhooks_missing": 0,
                            "detector_errors": 0}
        if attempt == 1 and not clean and known_open_loss(outcome, counters):
            continue
        assert clean, f"{outcome}\n{why}"
        return


def _kill_and_restart(kafka_broker, stormwatch_bin: str, tmp_path: Path, stream) -> tuple[dict, str, dict]:
    """One run: the outcome, (when the alerts differ) why, from :func:`explain`, and the counters."""
    src, expected = stream
    want = versions(expected)
    receiver = Receiver().start()
    # Faust reads BROKER_SESSION_TIMEOUT (60 s): the group waits that long for the killed member
    # before it rebalances; 15 s keeps the test short (the benchmark measures the default).
    hooks = {"STORMWATCH_WEBHOOK_URLS": receiver.url, "BROKER_SESSION_TIMEOUT": "15"}
    pair = Pair(kafka_broker, stormwatch_bin, tmp_path, extra_env=hooks).start()
    alerts = TopicReader(kafka_broker, pair.topic("alerts"))
    try:
        pair.workers[0].produce(src)
        deadline = time.monotonic() + TIMEOUT
        while len(versions(alerts.records)) < len(want) // 3 and time.monotonic() < deadline:
            alerts.poll()  # partway: a third of the alert versions are out
        assert len(versions(alerts.records)) < len(want), "the stream was over before the kill"
        victim = pair.owner_of_busiest()
        counted = _counters(pair)  # the victim's counters die with it
        pair.kill(victim)
        pair.restart(victim)
        equal = wait_for(alerts, latest(expected), TIMEOUT, idle=IDLE)
        deadline = time.monotonic() + 60
        while not want <= versions(receiver.alerts()) and time.monotonic() < deadline:
            time.sleep(0.5)
        dead = _dead_letters(kafka_broker, pair)
        outcome = {"diff": diff(latest(alerts.records), latest(expected)),
                   # a version is a pure function of the events before it: every copy of (alert_id,
                   # version), before the kill and after the restart, carries replay's content
                   "impure": impure(alerts.records, expected),
                   "webhooks_missing": len(want - versions(receiver.alerts())),  # every version at least once
                   "detector_errors": sum(1 for d in dead if d.get("reason") == "detector_error")}
        counters = {name: counted[name] + value for name, value in _counters(pair).items()}
        why = "" if equal else explain(alerts, expected, dead, counters)
        if outcome["webhooks_missing"]:
            why += f"\nwebhook versions missing: {sorted(want - versions(receiver.alerts()))[:5]}"
        return outcome, why, counters
    finally:
        alerts.close()
        pair.stop()
        receiver.stop()
