"""``replay`` and ``produce`` show a progress bar on a terminal, and nothing else changes:
in a pipe the output is byte for byte what it was, and the alerts are the same either way."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from commands import cli
from streams.local import LocalPipeline, replay_lines
from streams.settings import Settings
from commands.simulator import SimConfig, simulate_lines

QUIET_ENV = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "CI")}


@pytest.fixture(scope="module")
def feed(tmp_path_factory) -> Path:
    """Ten simulated minutes (several thousand lines: several progress updates), two bad lines."""
    path = tmp_path_factory.mktemp("progress") / "feed.jsonl"
    lines = list(simulate_lines(SimConfig(seed=3, start=1_764_000_000.0, minutes=10)))
    path.write_bytes(b"\n".join([*lines[:100], b"{oops", *lines[100:], b'{"type": "post"}']) + b"\n")
    return path


def forced(monkeypatch) -> io.StringIO:
    """Progress goes to a terminal-like console writing into the returned buffer."""
    screen = io.StringIO()
    monkeypatch.setattr(cli, "progress_console",
                        lambda: Console(file=screen, force_terminal=True, width=160, color_system="standard"))
    return screen


def test_a_piped_replay_writes_the_same_bytes_as_before_and_no_progress(stormwatch_bin: str, feed: Path,
                                                                        tmp_path: Path) -> None:
    done = subprocess.run([stormwatch_bin, "replay", str(feed)], capture_output=True, env=QUIET_ENV, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # What replay wrote before progress existed: the pipeline fed the whole file in one go.
    expected: list[bytes] = []
    pipeline = LocalPipeline(Settings(), lambda a: expected.append(a.to_json() + b"\n"), lambda _l: None)
    replay_lines(pipeline, feed)
    assert done.stdout == b"".join(expected) and len(expected) > 3
    err = done.stderr.decode().splitlines()
    assert len(err) == 3 and all(line.startswith('{"error"') for line in err[:2])  # two dead letters, then:
    assert err[2] == f"replayed {len(feed.read_bytes().splitlines())} lines: {pipeline.events} events, " \
                     f"2 dead letters, {len(expected)} alert versions"


def test_on_a_terminal_replay_shows_events_rate_dead_letters_and_alerts(monkeypatch, feed: Path,
                                                                         tmp_path: Path) -> None:
    screen = forced(monkeypatch)
    result = CliRunner().invoke(cli.main, ["replay", str(feed), "--alerts-out", str(tmp_path / "with.jsonl"),
                                           "--deadletter-out", str(tmp_path / "dead.jsonl")])
    assert result.exit_code == 0, result.output
    shown = screen.getvalue()
    total = len(feed.read_bytes().splitlines())
    assert "\x1b[" in shown and "replay" in shown and "lines/s" in shown
    assert f"{total}/{total}" in shown
    assert "2 dead letters" in shown and f"{total - 2:,} events" in shown
    alerts = (tmp_path / "with.jsonl").read_bytes()
    assert f"{len(alerts.splitlines()):,} alerts" in shown
    monkeypatch.setattr(cli, "progress_console", lambda: None)
    result = CliRunner().invoke(cli.main, ["replay", str(feed), "--alerts-out", str(tmp_path / "without.jsonl"),
                                           "--deadletter-out", str(tmp_path / "dead2.jsonl")])
    assert result.exit_code == 0 and (tmp_path / "without.jsonl").read_bytes() == alerts


def test_no_progress_without_a_terminal_or_in_ci(monkeypatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    assert cli.progress_console() is None  # pytest's standard error is not a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich then takes any stream for a terminal ...
    monkeypatch.setenv("CI", "true")
    assert cli.progress_console() is None  # ... but CI logs stay quiet


class FakeProducer:
    sent: list[tuple[str, bytes]] = []

    def __init__(self, **_kwargs) -> None:
        FakeProducer.sent = []

    def send(self, topic: str, value: bytes, key=None, partition=None) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_produce_shows_lines_sent_ticks_and_dead_letters_on_a_terminal(monkeypatch, feed: Path) -> None:
    import commands.produce as produce

    monkeypatch.setattr(produce, "KafkaProducer", FakeProducer)
    monkeypatch.setattr(produce, "ensure_topics", lambda *_a: None)
    quiet = CliRunner().invoke(cli.main, ["produce", str(feed), "--broker", "kafka://127.0.0.1:1"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.startswith("sent ") and "\x1b" not in quiet.output and "lines/s" not in quiet.output
    plain = list(FakeProducer.sent)
    screen = forced(monkeypatch)
    shown = CliRunner().invoke(cli.main, ["produce", str(feed), "--broker", "kafka://127.0.0.1:1"])
    assert shown.exit_code == 0 and shown.output == quiet.output
    def same(sent: list[tuple[str, bytes]]) -> list:  # a dead letter's ts is the wall clock's
        return [(topic, value if topic != "deadletter" else value.split(b'"ts"')[0]) for topic, value in sent]

    assert same(FakeProducer.sent) == same(plain) and len(plain) > 2000  # the same messages to the same topics
    total = len(feed.read_bytes().splitlines())
    ticks = feed.read_bytes().count(b'"type":"tick"')
    text = screen.getvalue()
    assert "produce" in text and "lines/s" in text and f"{total}/{total}" in text
    # {"type": "post"} is routed (checking fields is the worker's job): one unroutable line.
    assert "1 dead letters" in text and " ticks" in text and f"{total - 1 - ticks:,} sent" in text
