"""Webhooks: Standard Webhooks signatures, retries, give-up, filters, no duplicates, never blocking."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from streams.outputs.delivery import Delivery, DeliverySettings, EndpointConfig, Outbox
from tests.support.events import action, lines, order, tick
from tests.support.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"a test secret, not a real one").decode()


def events_file(tmp_path: Path) -> Path:
    src = tmp_path / "orders.jsonl"
    src.write_bytes(lines([order("o1", 0, 30), action("a1", "o1", 3, "refused"), order("o2", 1, 20),
                           order("o3", 2, 40, platform="douyin"), tick(60)]))
    return src


def replay(src: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[dict], list[dict]]:
    stormwatch = os.path.join(os.path.dirname(sys.executable), "stormwatch")
    alerts, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    done = subprocess.run([stormwatch, "replay", str(src), "--alerts-out", str(alerts), "--deadletter-out", str(dead)],
                          env={**os.environ, **env}, capture_output=True, timeout=120)
    return (done, [orjson.loads(x) for x in alerts.read_bytes().splitlines()],
            [orjson.loads(x) for x in dead.read_bytes().splitlines()])


def verify(headers: dict, body: bytes, secret: str = SECRET) -> bool:
    """The receiver's side of Standard Webhooks, written independently of streams.outputs.delivery."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig.split(",", 1)[1], expected)
               for sig in headers["webhook-signature"].split(" ") if sig.startswith("v1,"))


def test_replay_delivers_every_alert_version_once_signed(tmp_path: Path) -> None:
    receiver = Receiver().start()
    try:
        done, alerts, dead = replay(events_file(tmp_path), tmp_path, STORMWATCH_WEBHOOK_URLS=receiver.url,
                                    STORMWATCH_WEBHOOK_SECRET=SECRET)
    finally:
        receiver.stop()
    assert done.returncode == 0 and dead == []
    assert len(alerts) == 4  # o1 refused + overdue, o2 and o3 overdue
    got = receiver.accepted
    assert sorted(json.loads(r["body"])["alert_id"] for r in got) == sorted(a["alert_id"] for a in alerts)
    for record in got:
        alert = json.loads(record["body"])
        assert record["headers"]["webhook-id"] == f"{alert['alert_id']}:{alert['version']}"
        assert abs(int(record["headers"]["webhook-timestamp"]) - time.time()) < 300
        assert verify(record["headers"], record["body"])
        assert not verify(record["headers"], record["body"] + b" ")  # any change breaks the signature


def test_errors_are_retried_until_delivered(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=3).start()
    try:
        done, alerts, dead = replay(events_file(tmp_path), tmp_path, STORMWATCH_WEBHOOK_URLS=receiver.url,
                                    STORMWATCH_DELIVERY__BACKOFF_S="0.05")
    finally:
        receiver.stop()
    assert done.returncode == 0 and dead == []
    assert len(receiver.requests) == len(alerts) + 3
    assert sorted(a["alert_id"] for a in receiver.alerts()) == sorted(a["alert_id"] for a in alerts)


def test_a_receiver_down_for_a_while_gets_every_alert_once_back(tmp_path: Path) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    threading.Timer(2.0, receiver.start).start()
    try:
        done, alerts, dead = replay(events_file(tmp_path), tmp_path, STORMWATCH_WEBHOOK_URLS=receiver.url,
                                    STORMWATCH_DELIVERY__BACKOFF_S="0.2", STORMWATCH_DELIVERY__MAX_BACKOFF_S="1")
    finally:
        time.sleep(0.1)
        receiver.stop()
    assert done.returncode == 0 and dead == []
    assert sorted(a["alert_id"] for a in receiver.alerts()) == sorted(a["alert_id"] for a in alerts)


def test_a_receiver_that_never_recovers_is_given_up_into_the_dead_letters(tmp_path: Path) -> None:
    receiver = Receiver(always_fail=True).start()
    try:
        done, alerts, dead = replay(events_file(tmp_path), tmp_path, STORMWATCH_WEBHOOK_URLS=receiver.url,
                                    STORMWATCH_DELIVERY__BACKOFF_S="0.05", STORMWATCH_DELIVERY__GIVE_UP_S="1")
    finally:
        receiver.stop()
    assert done.returncode == 0  # replay still ends: every version delivered or given up on
    assert len(dead) == len(alerts)
    assert all(d["reason"] == "webhook_given_up" and "HTTP 500" in d["error"] for d in dead)


def test_endpoint_filters_choose_what_each_receiver_gets(tmp_path: Path) -> None:
    refusals, douyin = Receiver().start(), Receiver().start()
    config = tmp_path / "endpoints.json"
    config.write_text(json.dumps([{"url": refusals.url, "kinds": ["order_refused"]},
                                  {"url": douyin.url, "platforms": ["douyin"], "secret": SECRET}]))
    try:
        done, _alerts, _dead = replay(events_file(tmp_path), tmp_path, STORMWATCH_DELIVERY__ENDPOINTS_FILE=str(config))
    finally:
        refusals.stop()
        douyin.stop()
    assert done.returncode == 0
    assert [a["kind"] for a in refusals.alerts()] == ["order_refused"]
    assert [a["platform"] for a in douyin.alerts()] == ["douyin"]
    assert all(verify(r["headers"], r["body"]) for r in douyin.accepted)


def test_no_version_is_delivered_twice_even_after_a_restart(tmp_path: Path) -> None:
    receiver = Receiver().start()
    outbox_file = str(tmp_path / "outbox.sqlite")
    alert = {"alert_id": "order_overdue-x", "version": 1, "kind": "order_overdue", "severity": "warning",
             "platform": "weibo"}

    async def deliver_twice_across_a_restart() -> None:
        for _restart in range(2):
            delivery = Delivery([EndpointConfig(url=receiver.url)], DeliverySettings(), Outbox(outbox_file), print)
            delivery.start()
            delivery.submit(alert)
            delivery.submit(alert)  # at-least-once input: the same version again
            delivery.submit({**alert, "shadow": True, "alert_id": "shadowed"})  # shadow: never delivered
            assert await delivery.drain(timeout=10)
            await delivery.stop()

    try:
        asyncio.run(deliver_twice_across_a_restart())
    finally:
        receiver.stop()
    assert [(a["alert_id"], a["version"]) for a in receiver.alerts()] == [("order_overdue-x", 1)]


def test_a_slow_receiver_does_not_slow_detection(tmp_path: Path) -> None:
    """Detection finishes every alert while the slow receiver has taken almost none of them."""
    from streams.local import LocalPipeline, read_lines, replay_lines
    from streams.outputs.delivery import make_delivery
    from streams.settings import Settings

    receiver = Receiver(delay_s=1.0).start()
    src = events_file(tmp_path)

    async def run() -> tuple[int, int, int]:
        settings = Settings(webhook_urls=receiver.url)
        delivery = make_delivery(settings, print)
        delivery.start()
        raised = []

        def on_alert(alert) -> None:
            raised.append(alert)
            delivery.submit(alert.model_dump())

        pipeline = LocalPipeline(settings, on_alert, lambda _d: None)
        replay_lines(pipeline, src, read_lines(src))
        delivered_when_detection_ended = len(receiver.accepted)
        await delivery.drain(timeout=30)
        await delivery.stop()
        return len(raised), delivered_when_detection_ended, len(receiver.accepted)

    try:
        raised, early, late = asyncio.run(run())
    finally:
        receiver.stop()
    assert raised == 4 and early == 0 and late == 4


def versions(alert_id: str, first: int, last: int) -> list[dict]:
    return [{"alert_id": alert_id, "version": v, "kind": "order_overdue", "severity": "warning", "platform": "weibo"}
            for v in range(first, last + 1)]


def test_the_outbox_stays_bounded_over_a_long_run(tmp_path: Path) -> None:
    """2,000 versions in waves, 0.2 s retention: the outbox holds one wave, never the history."""
    receiver = Receiver().start()
    settings = DeliverySettings(retention_s=0.2)
    outbox = Outbox(str(tmp_path / "outbox.sqlite"))
    sizes = []

    async def run() -> None:
        delivery = Delivery([EndpointConfig(url=receiver.url)], settings, outbox, print)
        delivery.start()
        for wave in range(10):
            for version in versions(f"order_overdue-{wave % 3}", wave * 200 + 1, wave * 200 + 200):
                delivery.submit(version)
            assert await delivery.drain(timeout=30)
            sizes.append(outbox.size())
            await asyncio.sleep(0.25)  # the wave passes the retention: the next wave's deliveries prune it
        await delivery.stop()

    try:
        asyncio.run(run())
    finally:
        receiver.stop()
    got = [(a["alert_id"], a["version"]) for a in receiver.alerts()]
    assert len(got) == len(set(got)) == 2000
    assert max(sizes) <= 200 and outbox.count("delivered") == sizes[-1], sizes
    assert outbox.db.execute("select count(*) from outbox where body is not null").fetchone()[0] == 0


def test_a_version_submitted_again_within_the_retention_is_not_sent_again(tmp_path: Path) -> None:
    """Pruning runs meanwhile; only the versions finished longer ago than the retention may go again."""
    receiver = Receiver().start()
    settings = DeliverySettings(retention_s=4.0)  # longer than five deliveries take on a loaded machine
    outbox = Outbox(str(tmp_path / "outbox.sqlite"))

    async def run() -> None:
        delivery = Delivery([EndpointConfig(url=receiver.url)], settings, outbox, print)
        delivery.start()
        for alert in versions("old", 1, 5):
            delivery.submit(alert)
        assert await delivery.drain(timeout=10)
        await asyncio.sleep(4.2)  # "old" passes the retention
        for alert in versions("recent", 1, 5):
            delivery.submit(alert)
        assert await delivery.drain(timeout=10)  # these deliveries prune "old"
        assert outbox.size() == 5
        for alert in versions("recent", 1, 5) + versions("old", 1, 1):  # a re-read after a restart
            delivery.submit(alert)
        assert await delivery.drain(timeout=10)
        await delivery.stop()

    try:
        asyncio.run(run())
    finally:
        receiver.stop()
    got = [(a["alert_id"], a["version"]) for a in receiver.alerts()]
    assert got == [("old", v) for v in range(1, 6)] + [("recent", v) for v in range(1, 6)] + [("old", 1)]


def test_pruning_keeps_queued_rows_and_old_outboxes_are_upgraded(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.sqlite")
    old = sqlite3.connect(path)  # the schema before retention: no ``done`` column
    old.execute("""create table outbox (endpoint text, alert_id text, version integer, body blob, queued real,
        attempts integer default 0, next_try real default 0, state text default 'queued', last_error text,
        primary key (endpoint, alert_id, version))""")
    old.executemany("insert into outbox (endpoint, alert_id, version, body, queued, state) values (?, ?, ?, ?, ?, ?)",
                    [("e", "a", 1, b"{}", 1000.0, "delivered"), ("e", "a", 2, b"{}", 1000.0, "queued")])
    old.commit()
    old.close()
    outbox = Outbox(path)
    assert not outbox.add("e", "a", 1, b"{}")  # still de-duplicated until pruned
    outbox.add("e", "b", 1, b"{}")
    outbox.add("e", "c", 1, b"{}")
    outbox.mark("e", "b", 1, "delivered")
    outbox.mark("e", "c", 1, "given_up", "HTTP 500")
    assert outbox.prune(before=time.time() - 60) == 1  # only the old delivered row
    assert outbox.prune(before=time.time() + 1) == 2  # b and c; a:2 is queued, whatever its age
    assert outbox.next("e")[:2] == ("a", 2) and outbox.size() == 1


def test_finding_the_next_row_uses_the_queue_index_not_the_history() -> None:
    outbox = Outbox()
    outbox.db.executemany("insert into outbox (endpoint, alert_id, version, queued, state, done) "
                          "values ('e', ?, 1, 0, 'delivered', 0)", [(f"a{i}",) for i in range(50_000)])
    outbox.add("e", "queued", 1, b"{}")
    plan = " | ".join(row[3] for row in outbox.db.execute("explain query plan " + Outbox.NEXT, ("e",)))
    assert "USING INDEX outbox_queued" in plan and "TEMP B-TREE" not in plan, plan
    start = time.perf_counter()
    for _ in range(1000):
        assert outbox.next("e")[0] == "queued"
    assert time.perf_counter() - start < 0.5  # without the index: 9 s here (every call reads the history)
