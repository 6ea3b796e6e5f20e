"""The Faust worker on a real Kafka broker: the same alerts as ``replay``, dead letters, restarts."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.support.events import action, lines, order, tick
from tests.support.worker import Worker
from tests.test_replay import replay, write_scenario

pytestmark = pytest.mark.kafka


def canonical(alerts: list[dict]) -> list[bytes]:
    return sorted(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts)


def assert_fetches_no_changelog(worker: Worker, timeout: float = 15) -> None:
    """The worker's consumer fetches none of its tables' changelogs once recovered (Faust leaves
    them to aiokafka, whose unread changelog records held back every fetch: streams.kafka.consumer)."""
    admin = KafkaConsumer(bootstrap_servers=worker.broker.bootstrap)
    try:
        changelogs = sum(len(admin.partitions_for_topic(t)) for t in admin.topics()
                         if t.startswith(f"{worker.app_id}-") and t.endswith("-changelog"))
    finally:
        admin.close()
    deadline = time.monotonic() + timeout
    while True:
        paused = [s.value for s in worker.samples("stormwatch_consumer_paused_partitions")]
        if paused == [changelogs] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert changelogs > 0 and paused == [changelogs]


@pytest.fixture
def worker(kafka_broker, stormwatch_bin: str, tmp_path: Path):
    w = Worker(kafka_broker, stormwatch_bin, tmp_path).start()
    yield w
    w.stop()


def assert_batches_counted(worker: Worker) -> None:
    """Each stage that handled entries counts its batches (a batch holds one entry or more, and
    the histogram counts every entry) and the changelog messages it wrote at their ends; and a
    worker that owns every partition decodes few entries again (the ingest's events are shared
    with its stages: streams.kafka.stage.Decoded), but counts those it does."""
    samples = worker.samples("stormwatch_processing_seconds", "stormwatch_stage_batches", "stormwatch_state_writes",
                             "stormwatch_stage_decodes")

    def by_stage(name: str) -> dict[str, float]:
        return {s.labels["stage"]: s.value for s in samples if s.name == name}

    entries = {stage: n for stage, n in by_stage("stormwatch_processing_seconds_count").items() if n}
    batches = by_stage("stormwatch_stage_batches_total")
    writes = by_stage("stormwatch_state_writes_total")
    assert {"posts", "army_accounts", "army_objects", "army_pairs", "orders"} <= entries.keys()
    for stage, count in entries.items():
        assert 1 <= batches[stage] <= count, stage
    assert writes["army_accounts"] > 0 and writes["army_objects"] > 0 and writes["orders"] > 0
    decodes = by_stage("stormwatch_stage_decodes_total")
    assert entries.keys() <= decodes.keys() and sum(decodes.values()) < sum(entries.values()) / 4


def test_kafka_pipeline_gives_the_same_alerts_as_replay(worker: Worker, kafka_broker, stormwatch_bin: str,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    bad = write_scenario(src, bad_every=700)
    expected, letters, _ = replay(stormwatch_bin, src, tmp_path, "replay")
    expected_alerts = [orjson.loads(line) for line in expected.splitlines()]
    kinds = {a["kind"] for a in expected_alerts}
    assert kinds == {"order_overdue", "order_refused", "continued_dissemination", "water_army_campaign",
                     "legal_threshold", "viral_spread", "illegal_marketing", "violence_surge"}  # every detector
    assert len(letters) == bad

    worker.produce(src)
    got = worker.read("alerts", until=len(expected_alerts))
    assert canonical(got) == canonical(expected_alerts)
    dead = worker.read("deadletter", until=bad, timeout=30, settle=1)
    assert len(dead) == bad
    assert sorted(d["error"] for d in dead) == sorted(d["error"] for d in letters)
    metrics = worker.metrics()
    assert 'stormwatch_alerts_total{kind="order_overdue"} 2.0' in metrics
    assert "stormwatch_deadletter_total" in metrics
    assert f'stormwatch_consumer_lag{{partition="0",topic="{worker.app_id}.posts"}}' in metrics
    assert_batches_counted(worker)
    assert_fetches_no_changelog(worker)
    # The worker's API reads the changelogged ledger table.
    orders = {o["order_id"]: o["state"] for o in worker.api("/api/orders", "reg").json()}
    assert orders == {"order-rumor": "overdue", "order-army": "completed", "order-tag": "overdue"}
    assert worker.api("/api/platforms/weibo/scorecard", "weibo").json()["orders_received"] == 3
    assert worker.api("/api/platforms/douyin/scorecard", "weibo").status_code == 403
    assert worker.api("/api/orders", "nobody").status_code == 401


def test_a_platform_stamping_a_day_ahead_changes_no_other_platforms_alert_on_kafka(
        worker: Worker, stormwatch_bin: str, tmp_path: Path) -> None:
    """Each platform's own event time on a real broker (three partitions): the simulated stream for
    weibo, and the same ids for douyin stamped a day ahead, arriving together. The worker's
    alerts equal replay's, whose weibo alerts are weibo's alone (tests/test_platform_time.py);
    the API's order states go by each platform's own time. The file ends with a tick past both:
    the targets stage goes by the earliest platform, and a broker has no end of input."""
    from tests.test_platform_time import as_platform, interleaved, own, run

    weibo, douyin = as_platform("weibo", 0), as_platform("douyin", 86_000)
    end = {"type": "tick", "ts": douyin[-1]["ts"]}
    src = tmp_path / "two-clocks.jsonl"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in interleaved(weibo, douyin) + [end]))
    expected, letters, done = replay(stormwatch_bin, src, tmp_path, "replay")
    assert done.returncode == 0 and letters == []
    expected_alerts = [orjson.loads(line) for line in expected.splitlines()]
    assert own(expected_alerts, "weibo") == own(run(weibo + [end], None)[0], "weibo") != []
    worker.produce(src)
    got = worker.read("alerts", until=len(expected_alerts))
    assert canonical(got) == canonical(expected_alerts)
    states = {(o["platform"], o["state"]) for o in worker.api("/api/orders", "reg").json()}
    assert ("weibo", "overdue") in states and ("douyin", "overdue") in states


def test_malformed_messages_never_stop_the_worker(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """Also a valid post its platform may not send: weibo promises every root_id (cascades keyed
    by root), so a repost without one is a dead letter naming the field, as in replay; and a
    post of a platform the deployment does not take (STORMWATCH_PLATFORMS)."""
    worker = Worker(kafka_broker, stormwatch_bin, tmp_path,
                    extra_env={"STORMWATCH_CASCADES__ROOT_IDS_GIVEN": '["weibo"]',
                               "STORMWATCH_PLATFORMS": "weibo,douyin"}).start()
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        garbage = [b"\xff\xfe", b"[]", b"{}", b'{"type":"order"}', lines([{**order("o1", 0, 10), "deadline": None}])]
        for raw in garbage:
            producer.send(f"{worker.app_id}.orders", raw.rstrip(b"\n"), partition=0)
        producer.send(f"{worker.app_id}.platform-actions", b"null", partition=0)
        rootless = {"type": "post", "event_id": "p-no-root", "platform": "weibo", "ts": tick(1)["ts"], "post_id": "x",
                    "account_id": "u", "kind": "repost", "parent_id": "y"}
        producer.send(f"{worker.app_id}.posts", orjson.dumps(rootless), partition=0)
        stranger = {**rootless, "event_id": "p-stranger", "platform": "kuaishou", "kind": "original", "parent_id": None}
        producer.send(f"{worker.app_id}.posts", orjson.dumps(stranger), partition=0)
        producer.flush()
        src = tmp_path / "good.jsonl"
        src.write_bytes(lines([order("o2", 0, 10), action("a1", "o2", 1, "refused"), tick(20)]))
        worker.produce(src)
        alerts = worker.read("alerts", until=2, settle=2)
        assert sorted(a["kind"] for a in alerts) == ["order_overdue", "order_refused"]
        assert {a["subject"]["id"] for a in alerts} == {"o2"}
        dead = worker.read("deadletter", until=8, timeout=30, settle=1)
        assert len(dead) == 8
        assert any("order.deadline" in d["error"] for d in dead)
        assert [d["reason"] for d in dead if d["error"].startswith("post.root_id: required")] == ["invalid_field"]
        assert [d["reason"] for d in dead if d["error"].startswith("post.platform: 'kuaishou' is not")] == \
            ["invalid_field"]
        assert {d["source"].split("@")[0] for d in dead} == {
            f"{worker.app_id}.orders/0", f"{worker.app_id}.platform-actions/0", f"{worker.app_id}.posts/0"}
    finally:
        worker.stop()


def test_ledger_state_survives_a_worker_restart(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """With the production store (RocksDB); the second worker starts on another disk, so only
    the changelog can tell it what the first one knew."""
    rocksdb = {"STORMWATCH_STORE": "rocksdb://"}
    first = Worker(kafka_broker, stormwatch_bin, tmp_path, extra_env=rocksdb).start()
    try:
        part1 = tmp_path / "part1.jsonl"
        part1.write_bytes(lines([order("o7", 0, 30, measures=["remove_content", "report_back"]),
                                 action("a7", "o7", 5, "content_removed"), tick(10)]))
        first.produce(part1)
        deadline = time.monotonic() + 90  # mid-stream: the ledger holds the order, no deadline has passed
        while time.monotonic() < deadline:
            orders = first.api("/api/orders", "reg").json()
            if [o["measures_done"] for o in orders] == [["remove_content"]]:
                break
            time.sleep(0.3)
        assert [o["order_id"] for o in first.api("/api/orders", "reg").json()] == ["o7"]
        assert first.read("alerts", until=0, timeout=2, settle=0) == []
    finally:
        first.stop()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = Worker(kafka_broker, stormwatch_bin, elsewhere, app_id=first.app_id, port=first.port,
                    extra_env=rocksdb).start()
    try:
        part2 = tmp_path / "part2.jsonl"
        part2.write_bytes(lines([tick(31)]))
        second.produce(part2)
        alerts = second.read("alerts", until=1, timeout=180)
        assert_fetches_no_changelog(second)  # this time recovery read the changelogs first
    finally:
        second.stop()
    assert [a["kind"] for a in alerts] == ["order_overdue"]
    # Only the table restored from its changelog knows the content was removed before the restart.
    assert alerts[0]["evidence"]["missing_measures"] == ["report_back"]


def test_a_live_worker_fires_a_deadline_with_no_traffic(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """Wall-clock ticks advance event time on a quiet stream: the deadline fires on its own."""
    import time
    from datetime import datetime, timedelta, timezone

    live = Worker(kafka_broker, stormwatch_bin, tmp_path,
                  extra_env={"STORMWATCH_TICK_INTERVAL_S": "1", "STORMWATCH_ALLOWED_LATENESS_S": "1"}).start()
    try:
        now = datetime.now(timezone.utc)
        src = tmp_path / "live-order.jsonl"
        src.write_bytes(orjson.dumps({
            "type": "order", "event_id": "live-1", "platform": "weibo", "ts": now.isoformat(), "order_id": "live-o1",
            "regulator": "cac", "deadline": (now + timedelta(seconds=4)).isoformat(), "legal_basis": "规定 第20条",
            "measures": ["remove_content"], "items": [{"post_id": "p1"}]}) + b"\n")
        started = time.monotonic()
        live.produce(src)  # nothing else is ever sent
        alerts = live.read("alerts", until=1, timeout=60, settle=0)
    finally:
        live.stop()
    assert [a["kind"] for a in alerts] == ["order_overdue"]
    assert alerts[0]["evidence"]["order_id"] == "live-o1"
    assert time.monotonic() - started < 60


def test_webhooks_survive_a_worker_restart_without_duplicates(kafka_broker, stormwatch_bin: str,
                                                              tmp_path: Path) -> None:
    """Every alert version reaches a healthy receiver exactly once, across a stop and a start."""
    from collections import Counter

    from tests.support.receiver import Receiver

    receiver = Receiver().start()
    hooks = {"STORMWATCH_WEBHOOK_URLS": receiver.url}
    first = Worker(kafka_broker, stormwatch_bin, tmp_path, extra_env=hooks).start()
    try:
        part1 = tmp_path / "part1.jsonl"
        part1.write_bytes(lines([order("h1", 0, 10), action("x1", "h1", 2, "refused"), tick(15)]))
        first.produce(part1)
        assert len(first.read("alerts", until=2, settle=1)) == 2
        deadline = time.monotonic() + 30
        while len(receiver.accepted) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        first.stop()
    second = Worker(kafka_broker, stormwatch_bin, tmp_path, app_id=first.app_id, port=first.port,
                    extra_env=hooks).start()
    try:
        part2 = tmp_path / "part2.jsonl"
        part2.write_bytes(lines([order("h2", 20, 30), tick(40)]))
        second.produce(part2)
        alerts = second.read("alerts", until=3, settle=2)
        deadline = time.monotonic() + 30
        while len(receiver.accepted) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # anything delivered twice would arrive now
    finally:
        second.stop()
        receiver.stop()
    assert sorted((a["kind"], a["subject"]["id"]) for a in alerts) == [
        ("order_overdue", "h1"), ("order_overdue", "h2"), ("order_refused", "h1")]
    delivered = Counter(r["headers"]["webhook-id"] for r in receiver.accepted)
    assert set(delivered) == {f"{a['alert_id']}:{a['version']}" for a in alerts}
    assert set(delivered.values()) == {1}



def test_every_worker_answers_for_every_platform(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """Two workers split the partitions; each one's API still shows every platform's orders and alerts."""
    from kafka.partitioner.default import murmur2

    first = Worker(kafka_broker, stormwatch_bin, tmp_path).start()
    second = Worker(kafka_broker, stormwatch_bin, tmp_path, app_id=first.app_id).start()
    try:
        # One platform on each partition of the ledger's stage (keyed by platform, Kafka's default partitioner).
        by_partition: dict[int, str] = {}
        for name in ("weibo", "douyin", "kuaishou", "bilibili", "xiaohongshu", "zhihu", "toutiao", "wechat"):
            by_partition.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % first.partitions, name)
        platforms = sorted(by_partition.values())
        assert len(platforms) == first.partitions
        src = tmp_path / "platforms.jsonl"
        src.write_bytes(lines([e for p in platforms for e in (order(f"o-{p}", 0, 10, platform=p),
                                                               action(f"x-{p}", f"o-{p}", 2, "refused", platform=p))]
                              + [tick(5)]))
        first.produce(src)
        assert sorted(a["platform"] for a in first.read("alerts", until=len(platforms), settle=1)) == platforms

        def owned(worker: Worker) -> set[str]:
            stage = f"{worker.app_id}.{worker.app_id}-stage-orders"
            return {sample.labels["partition"] for sample in worker.samples("stormwatch_consumer_lag")
                    if sample.labels["topic"] == stage}

        def shown(worker: Worker) -> tuple[list[str], list[str]]:
            orders = sorted(o["platform"] for o in worker.api("/api/orders", "reg").json())
            refusals = sorted(a["platform"] for a in worker.api("/api/alerts?kind=order_refused", "reg").json())
            return orders, refusals

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            views = [shown(w) for w in (first, second)]
            if all(view == (platforms, platforms) for view in views):
                break
            time.sleep(0.5)
        assert views == [(platforms, platforms)] * 2
        # Neither worker owns every partition (the lag gauge names what each one owns, every 5 s):
        # the view, not local state, answered.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            mine, theirs = owned(first), owned(second)
            if mine and theirs and not mine & theirs:
                break
            time.sleep(1)
        assert mine and theirs and not mine & theirs, (mine, theirs)
        assert "weibo" in platforms  # and a platform's token still sees only its own, from any worker
        assert [o["platform"] for o in second.api("/api/orders", "weibo").json()] == ["weibo"]
        assert [o["platform"] for o in first.api("/api/orders", "weibo").json()] == ["weibo"]
    finally:
        first.stop()
        second.stop()


def test_the_worker_serves_only_its_own_routes(kafka_broker, stormwatch_bin: str, tmp_path: Path) -> None:
    """Faust's /router and /table pages listed raw detector state with no token; a client that
    sends half a request and goes silent was never let go."""
    import socket

    import httpx

    worker = Worker(kafka_broker, stormwatch_bin, tmp_path, extra_env={"STORMWATCH_WEB_TIMEOUT_S": "1"}).start()
    try:
        base = f"http://127.0.0.1:{worker.port}"
        for path in ("/router/", "/table/orders/", "/table/", "/graph/", "/stats/", "/performance/"):
            assert httpx.get(base + path, timeout=5).status_code == 404, path
        page = httpx.get(base + "/dashboard", timeout=5)
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert worker.api("/api/alerts", "reg").headers["cache-control"] == "no-store"
        script = httpx.get(base + "/static/echarts.min.js", timeout=5)  # the dashboard's chart library
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert httpx.get(base + "/static/nope.js", timeout=5).status_code == 404
        assert worker.api("/api/alerts/nope/versions", "reg").status_code == 404
        with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            assert time.monotonic() - started < 8
    finally:
        worker.stop()
