"""The evidence log on Kafka: a worker with the evidence stage on writes the same entries and raw
bytes as ``replay --evidence-dir`` for the same stream, and its bundles verify offline."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from events.models import format_ts
from commands.simulator import SimConfig, simulate_lines
from tests.support.worker import Worker

pytestmark = pytest.mark.kafka

KEY = base64.b64encode(bytes(range(32))).decode()
TOKENS = ('{"reg": {"role": "regulator"}, "weibo": {"role": "platform", "platform": "weibo"}, '
          '"douyin": {"role": "platform", "platform": "douyin"}}')


def _stream(path: Path) -> None:
    """Ten simulated minutes of one platform, then a tick far enough ahead that every source
    passes the sequencer's margin (a live worker's wall-clock ticks do the same)."""
    lines = list(simulate_lines(SimConfig(minutes=10, organic_per_s=3)))
    last = max(datetime.fromisoformat(orjson.loads(line)["ts"]) for line in lines)
    end = format_ts((last + timedelta(seconds=1800)).timestamp())
    path.write_bytes(b"\n".join(lines) + b"\n" + orjson.dumps({"type": "tick", "ts": end}) + b"\n")


def _same_bundles(worker: Worker, bin_: str, tmp_path: Path, wanted: list[str], wait_s: float = 180) -> list[str]:
    """The alerts whose bundle, exported from the worker's evidence-log topic, is not byte for byte
    the one exported from replay's folder (``tmp_path/log``): entries, raw bytes, proofs, tree
    heads. Empty when all are equal."""
    deadline = time.monotonic() + wait_s
    mismatched: list[str] = wanted
    while mismatched and time.monotonic() < deadline:  # the evidence stage may still be catching up
        mismatched = []
        for alert_id in wanted:
            mine, theirs = tmp_path / f"kafka-{alert_id}.zip", tmp_path / f"replay-{alert_id}.zip"
            if not theirs.exists():
                done = _run(bin_, "evidence", "export", alert_id, "--evidence-dir", str(tmp_path / "log"),
                            "--out", str(theirs))
                assert done.returncode == 0, done.stderr.decode()
            done = _run(bin_, "evidence", "export", alert_id, "--from-kafka", "--out", str(mine), env=worker.env)
            if done.returncode != 0 or mine.read_bytes() != theirs.read_bytes():
                mismatched.append(f"{alert_id}: {done.stderr.decode()[-300:] or 'different bytes'}")
        if mismatched:
            time.sleep(3)
    return mismatched


ON = {"STORMWATCH_EVIDENCE_SIGNING_KEY": KEY, "STORMWATCH_EVIDENCE__WORKER": "true", "STORMWATCH_API_TOKENS": TOKENS}


def _replay(bin_: str, src: Path, tmp_path: Path) -> tuple[list[dict], dict[str, str]]:
    """replay --evidence-dir tmp_path/log: the alerts, and the latest alert id of each kind."""
    replayed = _run(bin_, "replay", str(src), "--alerts-out", str(tmp_path / "alerts.jsonl"),
                    "--evidence-dir", str(tmp_path / "log"), env={**os.environ, "STORMWATCH_EVIDENCE_SIGNING_KEY": KEY})
    assert replayed.returncode == 0, replayed.stderr.decode()
    alerts = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    by_kind = {a["kind"]: a["alert_id"] for a in alerts}
    assert {"water_army_campaign", "legal_threshold", "order_overdue"} <= set(by_kind)
    return alerts, by_kind


def _run(bin_: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([bin_, *args], capture_output=True, timeout=180, env=env)


def test_the_workers_evidence_log_equals_replays(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "sim.jsonl"
    _stream(src)
    alerts, by_kind = _replay(stormwatch_bin, src, tmp_path)

    worker = Worker(kafka_broker, stormwatch_bin, tmp_path, extra_env=ON).start()
    try:
        worker.produce(src)
        assert len(worker.read("alerts", until=len(alerts), timeout=240, settle=1)) >= len(alerts)
        wanted = sorted(set(by_kind.values()))
        mismatched = _same_bundles(worker, stormwatch_bin, tmp_path, wanted)
        assert not mismatched, f"bundles differ from replay's: {mismatched}"
        for alert_id in wanted:
            done = _run(stormwatch_bin, "evidence", "verify", str(tmp_path / f"kafka-{alert_id}.zip"),
                        "--public-key", (tmp_path / "log" / "public-key").read_text().strip())
            assert done.returncode == 0, done.stdout.decode()
            assert done.stdout.startswith(b"OK ")

        # The worker's API serves the same bundle to the regulator and to the alert's own platform only.
        threshold = by_kind["legal_threshold"]
        deadline = time.monotonic() + 60
        while worker.api(f"/api/alerts/{threshold}/evidence", "reg").status_code == 404 and time.monotonic() < deadline:
            time.sleep(1)  # the API's view follows the alerts topic
        response = worker.api(f"/api/alerts/{threshold}/evidence", "reg")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        assert response.content == (tmp_path / f"replay-{threshold}.zip").read_bytes()
        assert worker.api(f"/api/alerts/{threshold}/evidence", "weibo").content == response.content
        assert worker.api(f"/api/alerts/{threshold}/evidence", "douyin").status_code == 403
        assert worker.api(f"/api/alerts/{threshold}/evidence", "nobody").status_code == 401
    finally:
        worker.stop()


def test_a_platform_lagging_hours_changes_nothing_in_anothers_evidence_log_on_kafka(
        kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """Weibo's stream, and Douyin's copy of it stamped three hours behind (its attacks naming other
    persons), arriving together at a worker with the evidence stage on. The targets stage goes by
    the earliest platform, so Douyin holds Weibo's ``violence_surge`` back until the file's last
    tick: each platform's log still takes its entries in its own order, each stage telling the
    evidence stage each platform's time, none past what it still holds. Weibo's log from the
    worker equals replay's, which equals Weibo's alone (tests/test_evidence.py)."""
    from evidence.log import PlatformLogs
    from tests.test_platform_time import as_platform, interleaved, naming_others

    weibo = as_platform("weibo", 0)
    douyin = [naming_others(event) for event in as_platform("douyin", -3 * 3600)]
    last = max(datetime.fromisoformat(event["ts"].replace("Z", "+00:00")) for event in weibo)
    end = {"type": "tick", "ts": format_ts((last + timedelta(seconds=1800)).timestamp())}
    src = tmp_path / "two-clocks.jsonl"
    src.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in interleaved(weibo, douyin) + [end]))
    alerts, _by_kind = _replay(stormwatch_bin, src, tmp_path)
    alone_dir = tmp_path / "alone"
    alone_dir.mkdir()
    (alone_dir / "weibo.jsonl").write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in weibo + [end]))
    _replay(stormwatch_bin, alone_dir / "weibo.jsonl", alone_dir)
    assert PlatformLogs.open(tmp_path / "log").logs["weibo"].leaves == \
        PlatformLogs.open(alone_dir / "log").logs["weibo"].leaves
    wanted = sorted({a["alert_id"] for a in alerts if a["platform"] == "weibo"
                     and a["kind"] in ("violence_surge", "legal_threshold", "order_overdue", "water_army_campaign")})
    assert any(a.startswith("violence_surge-") for a in wanted)

    worker = Worker(kafka_broker, stormwatch_bin, tmp_path, extra_env=ON).start()
    try:
        worker.produce(src)
        assert len(worker.read("alerts", until=len(alerts), timeout=240, settle=1)) >= len(alerts)
        mismatched = _same_bundles(worker, stormwatch_bin, tmp_path, wanted)
        assert not mismatched, f"bundles differ from replay's: {mismatched}"
    finally:
        worker.stop()


def test_a_restarted_worker_appends_where_it_stopped(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """The first worker logs part of the stream and stops; the second, on another disk (state from
    the changelogged tables alone), logs the rest: together the very log replay writes.

    The log can only equal replay's when the workers raised replay's alerts. Where they did not
    (the open part of issue 13, docs/KNOWN-PROBLEMS.md: after a restart an alert version was
    seen raised one event later, with the same figures), that is not the evidence stage's fault:
    the run is tried once more on fresh topics and both are printed. When the alerts equal
    replay's, any difference in the evidence fails at once."""
    for attempt in (1, 2):
        mismatched, alerts_differ = _stop_and_start(kafka_broker, stormwatch_bin, tmp_path / f"run{attempt}")
        print(f"stop and start, run {attempt}: bundles differing {len(mismatched)}, alerts differing {alerts_differ}")
        if attempt == 1 and mismatched and alerts_differ:
            continue
        assert not mismatched, f"bundles differ from replay's (alerts differing from replay's: {alerts_differ}): " \
                               f"{mismatched}"
        return


def _stop_and_start(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """One run: the alerts whose bundles differ from replay's, and the alert versions (latest of
    each alert) the workers raised differently from replay."""
    from streams.kafka.evidence import read_log_topic
    from streams.settings import Settings

    tmp_path.mkdir()
    src = tmp_path / "sim.jsonl"
    _stream(src)
    alerts, by_kind = _replay(stormwatch_bin, src, tmp_path)
    lines = src.read_bytes().splitlines(keepends=True)
    half = len(lines) * 85 // 100  # the first worker's sources get 7:52 of the 10 minutes: 2:52 logged, the rest waits
    part1, part2 = tmp_path / "part1.jsonl", tmp_path / "part2.jsonl"
    part1.write_bytes(b"".join(lines[:half]))
    part2.write_bytes(b"".join(lines[half:]))

    first = Worker(kafka_broker, stormwatch_bin, tmp_path, extra_env=ON).start()
    try:
        first.produce(part1)
        env = first.env
        settings = Settings(broker=env["STORMWATCH_BROKER"], topic_prefix=env["STORMWATCH_TOPIC_PREFIX"],
                            app_id=env["STORMWATCH_APP_ID"])
        seen, still = -1, 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and still < 3:  # until the log stops growing
            time.sleep(3)
            count = len(read_log_topic(settings))
            still = still + 1 if count == seen and count > 0 else 0
            seen = count
        assert seen > 0  # the first worker logged some of it
    finally:
        first.stop()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = Worker(kafka_broker, stormwatch_bin, elsewhere, app_id=first.app_id, port=first.port, extra_env=ON).start()
    try:
        second.produce(part2)
        second.read("alerts", until=len(alerts), timeout=240, settle=1)  # a missing version shows below
        mismatched = _same_bundles(second, stormwatch_bin, tmp_path, sorted(set(by_kind.values())))
        raised = second.read("alerts", until=len(alerts), timeout=30, settle=1)
    finally:
        second.stop()
    latest = lambda records: {a["alert_id"]: a for a in sorted(records, key=lambda a: a["version"])}  # noqa: E731
    theirs, mine = latest(alerts), latest(raised)
    differ = sorted(a for a in theirs.keys() | mine.keys() if theirs.get(a) != mine.get(a))
    if differ:  # what each ordered stage held when the first worker stopped, and what the second read back
        for path in sorted(tmp_path.glob("worker-*.log")) + sorted(elsewhere.glob("worker-*.log")):
            print(path.name, *[line for line in path.read_text(errors="replace").splitlines()
                               if " taken: " in line or " events buffered, " in line], sep="\n  ")
    return mismatched, differ
