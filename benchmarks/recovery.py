"""Crash recovery on Kafka: two RocksDB workers, 4 partitions, the simulator's stream.

Run 1 drains the stream with no failure. Run 2 (a fresh app id and topics) kills the worker
that owns the busiest partition with SIGKILL once a share of the alerts has appeared, and
starts it again on the same data folder. Each run's alerts (latest version per ``alert_id``,
every field) are compared with ``stormwatch replay``'s; run 2 also checks that a webhook
receiver got every (alert_id, version) replay raised.

Run: ``python -m benchmarks.recovery [--minutes 20 --per-s 15]`` (starts its own Kafka broker).
Figures only, no assertions; the ``kafka`` test ``tests/test_kafka_crash.py`` asserts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.crash import (  # noqa: E402
    Pair, TopicReader, diff, explain, latest, replay_alerts, versions, wait_for, write_stream)
from tests.support.kafka_broker import KafkaBroker  # noqa: E402
from tests.support.receiver import Receiver  # noqa: E402

COUNTERS = ("stormwatch_watchdog_rereads", "stormwatch_gaps_reread", "stormwatch_hole_messages_read_back")


def run(broker: KafkaBroker, bin_: str, src: Path, expected: list[dict], workdir: Path,
        kill_at: float | list[float] | None, timeout: float, store: str = "rocksdb://",
        session_s: float | None = None) -> dict:
    """One run; ``kill_at``: the share(s) of replay's alert versions to wait for before each
    kill (one SIGKILL and restart per share). The victim's data folder is copied right after
    each kill (``<workdir>/snapshot<i>``), for looking at what the store held."""
    kills = [kill_at] if isinstance(kill_at, float) else list(kill_at or [])
    want = latest(expected)
    receiver = Receiver().start()
    env = {"STORMWATCH_WEBHOOK_URLS": receiver.url, "STORMWATCH_STORE": store}
    if session_s:  # Faust reads it from the environment
        env["BROKER_SESSION_TIMEOUT"] = str(session_s)
    pair = Pair(broker, bin_, workdir, extra_env=env).start()
    alerts = TopicReader(broker, pair.topic("alerts"))
    figures: dict = {}
    counted = dict.fromkeys(COUNTERS, 0.0)
    try:
        started = time.monotonic()
        pair.workers[0].produce(src)
        figures["produce_s"] = time.monotonic() - started
        for i, share in enumerate(kills):
            while len(versions(alerts.records)) < share * len(versions(expected)):
                alerts.poll()
                if time.monotonic() - started > timeout:
                    break
            victim = pair.owner_of_busiest()
            for name in COUNTERS:  # the victim's counters die with it
                counted[name] += pair.counter(name)
            pair.kill(victim)
            figures["killed_after_s"] = time.monotonic() - started
            figures["versions_before_kill"] = len(versions(alerts.records))
            figures.setdefault("kills", []).append((victim, round(figures["killed_after_s"], 1),
                                                    figures["versions_before_kill"]))
            shutil.copytree(pair.workers[victim].logdir / "data", workdir / f"snapshot{i}", dirs_exist_ok=True)
            pair.restart(victim)
            restarted = time.monotonic()
            figures["restart_s"] = restarted - started - figures["killed_after_s"]
        figures["equal"] = wait_for(alerts, want, timeout)
        figures["last_alert_s"] = alerts.last_new - started
        if kills:
            figures["recovery_s"] = alerts.last_new - restarted
        figures["diff"] = diff(latest(alerts.records), want)
        (workdir / "alerts.jsonl").write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in alerts.records))
        figures["duplicates"] = len(alerts.records) - len(versions(alerts.records))
        deadline = time.monotonic() + 60
        while not versions(expected) <= versions(receiver.alerts()) and time.monotonic() < deadline:
            time.sleep(0.5)
        figures["webhook_missing"] = len(versions(expected) - versions(receiver.alerts()))
        dead = TopicReader(broker, pair.topic("deadletter"))
        for _ in range(6):
            dead.poll()
        dead.close()
        figures["detector_errors"] = sum(1 for d in dead.records if d.get("reason") == "detector_error")
        figures["deadletters"] = len(dead.records)
        for name in COUNTERS:
            figures[name] = counted[name] + pair.counter(name)
        if not figures["equal"]:
            figures["explain"] = explain(alerts, expected, dead.records, {n: figures[n] for n in COUNTERS})
    finally:
        alerts.close()
        pair.stop()
        receiver.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=20, help="simulated minutes of one platform")
    parser.add_argument("--per-s", type=float, default=15.0, help="organic posts per simulated second")
    parser.add_argument("--kill-at", type=float, nargs="+", default=[0.3],
                        help="share of alert versions seen before the kill (several: one kill and restart each)")
    parser.add_argument("--repeat", type=int, default=1, help="crash runs in a row (fresh topics each)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--workdir", type=Path, help="keep the stream, replay and worker logs here")
    parser.add_argument("--only", choices=["calm", "crash"], help="one of the two runs")
    parser.add_argument("--store", default="rocksdb://", help="the workers' table store (memory:// too)")
    parser.add_argument("--session-timeout", type=float, help="Faust's broker_session_timeout for the workers "
                        "(default Faust's 60 s): how long the group waits for a killed member")
    args = parser.parse_args()
    bin_ = str(Path(sys.executable).with_name("stormwatch"))
    with tempfile.TemporaryDirectory(prefix="stormwatch-recovery-") as tmp, KafkaBroker() as broker:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src = work / "events.jsonl"
        events = write_stream(src, args.minutes, args.per_s)
        expected = replay_alerts(bin_, src, work)
        print(f"events: {events:,}; replay: {len(expected)} alert versions, {len(latest(expected))} alerts")
        if args.only != "crash":
            calm = run(broker, bin_, src, expected, work / "calm", None, args.timeout, args.store)
            print(f"no failure: produced in {calm['produce_s']:.1f} s, last alert {calm['last_alert_s']:.1f} s after "
                  f"the produce started; equal to replay: {calm['equal']} {calm['diff']}; duplicate versions "
                  f"{calm['duplicates']}; webhook versions missing {calm['webhook_missing']}; dead letters "
                  f"{calm['deadletters']} (detector_error {calm['detector_errors']}); watchdog re-reads "
                  f"{calm['stormwatch_watchdog_rereads']:.0f}, gaps re-read {calm['stormwatch_gaps_reread']:.0f}, "
                  f"hole messages read back {calm['stormwatch_hole_messages_read_back']:.0f}")
        for attempt in range(args.repeat if args.only != "calm" else 0):
            crash = run(broker, bin_, src, expected, work / f"crash{attempt}", args.kill_at, args.timeout,
                        args.store, args.session_timeout)
            if crash.get("explain"):
                print(crash["explain"])
            print(f"kills (worker, s, versions seen): {crash['kills']}")
            print(f"kill -9 after {crash['killed_after_s']:.1f} s ({crash['versions_before_kill']} versions seen), "
                  f"restarted in {crash['restart_s']:.1f} s; last alert {crash['recovery_s']:.1f} s after the restart "
                  f"({crash['last_alert_s']:.1f} s after the produce started); equal to replay: {crash['equal']} "
                  f"{crash['diff']}; duplicate versions {crash['duplicates']}; webhook versions missing "
                  f"{crash['webhook_missing']}; dead letters {crash['deadletters']} (detector_error "
                  f"{crash['detector_errors']}); watchdog re-reads {crash['stormwatch_watchdog_rereads']:.0f}, gaps "
                  f"re-read {crash['stormwatch_gaps_reread']:.0f}, hole messages read back "
                  f"{crash['stormwatch_hole_messages_read_back']:.0f}", flush=True)


if __name__ == "__main__":
    main()
