"""The worker's own rules that need no broker (the Kafka restart tests exercise them live)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streams.app import Progress

STALL = Progress.STALL_S


def test_a_partition_fetched_past_what_the_agents_handled_is_stuck_once_it_stops_moving() -> None:
    progress = Progress()
    # At assignment the group had committed (next to read): posts/0 5, posts/1 3, orders/0 2.
    progress.assigned({("posts", 0): 5, ("posts", 1): 3, ("orders", 0): 2})
    progress.mark(SimpleNamespace(tp=("posts", 1), offset=6))
    # posts/0: nothing new. posts/1: handled up to 6, fetched to 9. orders/0: fetched to 4,
    # none of it handled. reports/0: never committed by the group, so not watched.
    positions = {("posts", 0): 5, ("posts", 1): 9, ("orders", 0): 4, ("reports", 0): 7}
    assert progress.stuck(positions, now=0.0) == {}
    progress.mark(SimpleNamespace(tp=("posts", 1), offset=7))  # a backlog that moves is not a stall
    assert progress.stuck(positions, now=STALL - 1) == {}
    assert progress.stuck(positions, now=STALL) == {("orders", 0): 2}
    assert progress.stuck(positions, now=STALL - 1 + STALL) == {("posts", 1): 8}
    assert progress.stuck(positions, now=STALL + 1) == {}  # after a re-read: a whole period again
    progress.assigned({})  # a new assignment forgets the old partitions
    assert progress.stuck(positions, now=10 * STALL) == {}


def test_a_partition_never_fetched_is_re_read_every_period_until_an_agent_handles_it() -> None:
    """The watchdog passes the partition's end offset when it is further than the consumer's
    position: a partition Faust left paused is stuck too, again each period until handled."""
    progress = Progress()
    progress.assigned({("orders", 0): 1})
    assert progress.stuck({("orders", 0): 2}, now=0.0) == {}
    assert progress.stuck({("orders", 0): 2}, now=STALL) == {("orders", 0): 1}
    assert progress.stuck({("orders", 0): 2}, now=STALL + 5) == {}  # the re-read gets a whole period
    assert progress.stuck({("orders", 0): 2}, now=2 * STALL) == {("orders", 0): 1}
    progress.mark(SimpleNamespace(tp=("orders", 0), offset=1))  # handled at last
    assert progress.stuck({("orders", 0): 2}, now=3 * STALL) == {}


@pytest.mark.parametrize("detectors", ["", "water_army", "post_targets,targets"])
def test_the_worker_builds_with_any_set_of_detectors(detectors: str, tmp_path) -> None:
    """Agents, stages and the API view are wired without a broker; the ledger may be left out."""
    from streams.app import create_app, topic_names
    from streams.settings import Settings

    settings = Settings(detectors=detectors, app_id=f"build-{len(detectors)}", data_dir=tmp_path, store="memory://")
    app = create_app(settings)
    stages = sorted(name.rsplit("-stage-", 1)[1] for name in topic_names(settings) if "-stage-" in name)
    assert stages == {"": ["platform", "post_targets", "targets"], "water_army": ["platform"],
                      "post_targets,targets": ["post_targets", "targets"]}[detectors]
    assert sorted(agent.split("-", 1)[1] for agent in app.agents if agent.startswith("stage-")) == stages
