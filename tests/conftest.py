"""Shared fixtures: a real Kafka broker for the session, scenario builders, and the CI guard.

Kafka tests never skip: if the broker cannot start, they fail. Under ``CI=true`` the session
also fails when no ``kafka``-marked test passed, so a run cannot go green without them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.kafka_broker import KafkaBroker  # noqa: E402

_kafka_passed: list[str] = []


@pytest.fixture(scope="session")
def kafka_broker():
    """One real Kafka 4.x broker on 127.0.0.1 for the whole session."""
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def stormwatch_bin() -> str:
    """The installed console script next to this interpreter."""
    path = Path(sys.executable).with_name("stormwatch")
    assert path.exists(), f"stormwatch is not installed next to {sys.executable}; run `make test`"
    return str(path)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "kafka" in report.keywords:
        _kafka_passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    selected_all = not session.config.getoption("-k") and not session.config.getoption("-m")
    if os.environ.get("CI", "").lower() == "true" and selected_all and not _kafka_passed:
        print("\nCI: no Kafka test passed; the suite must run them against the real broker.", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    terminalreporter.write_line(f"kafka tests passed against the real broker: {len(_kafka_passed)}")
