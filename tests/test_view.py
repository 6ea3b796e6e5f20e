"""The API's view of every platform, applied from the alerts topic and the ledger's changelog
(tailing real topics is covered by test_every_worker_answers_for_every_platform)."""

from __future__ import annotations

from datetime import datetime

import orjson

from streams.view import ClusterView


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
