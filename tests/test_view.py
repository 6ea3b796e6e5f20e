"""The API's view of every platform, applied from the alerts topic and the ledger's changelog
(tailing real topics is covered by test_every_worker_answers_for_every_platform; where the
alerts topic is read from on start, by the Kafka test at the end)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import orjson
import pytest

from streams.kafka.view import ClusterView


def alert(alert_id: str, version: int, ts: str = "2026-11-30T00:00:00+00:00", **extra) -> bytes:
    return orjson.dumps({"alert_id": alert_id, "version": version, "platform": "weibo", "ts": ts, **extra})


def test_the_latest_version_of_each_alert_wins_whatever_the_order() -> None:
    view = ClusterView()
    for raw in (alert("a", 2), alert("a", 1), alert("b", 1, ts="2026-11-30T01:00:00+00:00"), b"not json",
                alert("c", 1, shadow=True)):
        view.apply_alert(raw)
    assert {k: v["version"] for k, v in view.alerts.items()} == {"a": 2, "b": 1}
    assert view.latest_ts == datetime.fromisoformat("2026-11-30T01:00:00+00:00").timestamp()


def test_changelog_records_set_and_tombstones_delete() -> None:
    view = ClusterView()
    view.apply_ledger(orjson.dumps("weibo\to\to1"), orjson.dumps({"order": {"platform": "weibo"}}))
    view.apply_ledger(orjson.dumps("weibo\to\to2"), orjson.dumps({"order": None}))
    view.apply_ledger(orjson.dumps("weibo\to\to2"), None)
    view.apply_ledger(None, b"{}")
    view.apply_ledger(b"\xff", b"{}")
    assert view.ledger == {"weibo\to\to1": {"order": {"platform": "weibo"}}}


def at(seconds: float) -> str:
    return datetime.fromtimestamp(1_800_000_000 + seconds, timezone.utc).isoformat()


def test_the_view_keeps_only_the_horizon_over_a_long_run() -> None:
    """A day of alerts, ten a minute, an hour's horizon: the view never holds more than 1.1 hours."""
    view = ClusterView(horizon_s=3600)
    most = 0
    for minute in range(24 * 60):
        for k in range(10):
            view.apply_alert(alert(f"a{minute}-{k}", 1, ts=at(minute * 60)))
        most = max(most, len(view.alerts))
    assert 600 <= most <= 1.1 * 600 + 10
    assert set(view.alerts) == set(view.alert_ts)
    oldest = min(datetime.fromisoformat(a["ts"]).timestamp() for a in view.alerts.values())
    assert oldest >= view.latest_ts - 3600 * 1.1


def test_pruning_drops_only_alerts_older_than_the_horizon_and_the_latest_version_wins() -> None:
    view = ClusterView(horizon_s=100)
    view.apply_alert(alert("old", 1, ts=at(0)))
    view.apply_alert(alert("kept", 1, ts=at(0)))
    view.apply_alert(alert("kept", 2, ts=at(50)))  # a newer version with a newer ts keeps it in
    view.apply_alert(alert("edge", 1, ts=at(20)))  # exactly the horizon before the newest: kept
    view.apply_alert(alert("new", 1, ts=at(120)))
    view.prune("weibo")
    assert {k: v["version"] for k, v in view.alerts.items()} == {"kept": 2, "edge": 1, "new": 1}
    view.apply_alert(alert("kept", 1, ts=at(60)))  # an older version never replaces the latest
    view.apply_alert(alert("late", 1, ts=at(10)))  # arrives already past the horizon
    assert {k: v["version"] for k, v in view.alerts.items()} == {"kept": 2, "edge": 1, "new": 1}
    view.apply_alert(alert("new", 2, ts=at(200)))  # newest ts 200: "kept" (50) and "edge" (20) are out
    view.prune("weibo")
    assert {k: v["version"] for k, v in view.alerts.items()} == {"new": 2}


def test_the_api_keeps_reading_the_same_dict() -> None:
    view = ClusterView(horizon_s=10)
    served = view.alerts  # what streams.kafka.app hands to the API
    for i in range(100):
        view.apply_alert(alert(f"a{i}", 1, ts=at(i)))
    assert served is view.alerts and set(served) == {f"a{i}" for i in range(89, 100)}


@pytest.mark.kafka
def test_on_start_the_view_reads_alerts_from_the_horizon_not_from_offset_0(kafka_broker) -> None:
    """Messages produced 10 days ago are skipped with a 7-day horizon, unless their partition has
    nothing newer (then it is read from its start). Event times are all recent, so only the seek
    can keep the old ones out."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    topic = "view-horizon-alerts"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    now = time.time()
    ten_days_ago_ms = int((now - 10 * 86400) * 1000)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for partition, alert_id, produced_ms in [(0, "old-0", ten_days_ago_ms), (0, "new-0", None),
                                             (1, "old-1", ten_days_ago_ms)]:
        producer.send(topic, alert(alert_id, 1, ts=datetime.fromtimestamp(now, timezone.utc).isoformat()),
                      partition=partition, timestamp_ms=produced_ms)
    producer.flush()
    producer.close()

    async def follow_until_both_partitions_are_read() -> set[str]:
        view = ClusterView(horizon_s=7 * 86400)
        task = asyncio.create_task(view.follow([kafka_broker.bootstrap], topic))
        try:
            deadline = time.monotonic() + 30
            while not {"new-0", "old-1"} <= set(view.alerts) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return set(view.alerts)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(follow_until_both_partitions_are_read()) == {"new-0", "old-1"}


def test_another_platforms_alerts_stamped_ahead_push_none_of_a_platforms_out() -> None:
    """Each platform's alerts are kept for the horizon of its own newest alert: douyin's alerts
    stamped a week ahead leave weibo's where they were (the view once kept one horizon for all)."""
    view = ClusterView(horizon_s=3600)
    view.apply_alert(alert("w1", 1, ts=at(0)))
    for i in range(20):
        view.apply_alert(orjson.dumps({"alert_id": f"d{i}", "version": 1, "platform": "douyin",
                                       "ts": at(7 * 86400 + i * 600)}))
    view.apply_alert(alert("w2", 1, ts=at(60)))
    assert {"w1", "w2"} <= set(view.alerts) and len(view.alerts) == 2 + 7  # douyin's own hour and a tenth
    assert view.now("weibo") == 1_800_000_060 and view.now("douyin") == 1_800_000_000 + 7 * 86400 + 19 * 600
