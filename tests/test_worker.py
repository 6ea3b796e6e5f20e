"""The worker's own rules that need no broker (the Kafka tests exercise them live)."""

from __future__ import annotations

from types import SimpleNamespace

from streams.app import Progress


def test_the_watchdog_names_partitions_fetched_past_what_idle_agents_handled() -> None:
    """Unit test of the rule behind the restart watchdog (the Kafka restart tests exercise it live)."""
    progress = Progress()
    progress.mark(SimpleNamespace(tp="posts/0", offset=4))
    positions = {"posts/0": 5, "posts/1": 3}  # posts/0: all handled; posts/1: fetched, never handed over
    assert progress.lost(positions) == frozenset()  # agents busy a moment ago: not yet
    progress.at -= Progress.IDLE_S
    assert progress.lost(positions) == frozenset({("posts/1", 3)})
    progress.mark(SimpleNamespace(tp="posts/1", offset=2))
    assert progress.lost(positions) == frozenset()
