"""Webhook delivery against hostile receivers and bad configuration (issue 14, item 8).

Every receiver here is a real HTTP server on 127.0.0.1. Time bounds are generous (several
times the configured deadline): they tell "abandoned" from "hangs", not fast from slow.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.outputs.delivery import Delivery, DeliverySettings, EndpointConfig, Outbox, endpoints_from
from tests.support.events import lines, order, tick
from tests.support.hostile import HostileReceiver
from tests.support.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"a test secret, not a real one").decode()
ALERT = {"alert_id": "order_overdue-x", "version": 1, "kind": "order_overdue", "severity": "warning",
         "platform": "weibo"}


async def deliver(url: str, settings: DeliverySettings, drain_s: float) -> tuple[bool, list[dict], Delivery]:
    """Submit ALERT to one endpoint; whether it was delivered or given up within ``drain_s``."""
    given_up: list[dict] = []
    delivery = Delivery([EndpointConfig(url=url, secret=SECRET)], settings, Outbox(), given_up.append)
    delivery.start()
    delivery.submit(ALERT)
    try:
        drained = await delivery.drain(timeout=drain_s)
    finally:
        await delivery.stop()
    return drained, given_up, delivery


def test_a_receiver_trickling_its_headers_is_abandoned_at_the_attempt_deadline_and_given_up() -> None:
    """A byte every 0.5 s never trips httpx's per-read timeout (1 s); the attempt deadline does."""
    receiver = HostileReceiver("trickle_headers", interval_s=0.5).start()
    settings = DeliverySettings(timeout_s=1, attempt_deadline_s=1, give_up_s=2, backoff_s=0.05, max_backoff_s=0.2)
    started = time.monotonic()
    try:
        drained, given_up, _ = asyncio.run(deliver(receiver.url, settings, drain_s=30))
    finally:
        receiver.stop()
    elapsed = time.monotonic() - started
    assert drained and elapsed < 30, elapsed  # give-up 2 s + one attempt of 1 s; 10x margin
    assert len(given_up) == 1 and "deadline" in given_up[0]["error"], given_up
    assert receiver.connections >= 2  # abandoned attempts are retried until the give-up time


def test_a_receiver_trickling_the_body_of_a_200_is_delivered_at_the_attempt_deadline() -> None:
    """The status line is the verdict: the deadline cuts the body short, and the version is not sent again."""
    receiver = HostileReceiver("trickle_body", interval_s=0.5).start()
    settings = DeliverySettings(timeout_s=1, attempt_deadline_s=1, give_up_s=60, backoff_s=0.05)
    started = time.monotonic()
    try:
        drained, given_up, _ = asyncio.run(deliver(receiver.url, settings, drain_s=30))
    finally:
        receiver.stop()
    elapsed = time.monotonic() - started
    assert drained and given_up == [] and elapsed < 10, elapsed  # one attempt of 1 s; 10x margin
    assert receiver.connections == 1


def test_a_huge_answer_is_read_only_up_to_the_cap() -> None:
    """The receiver answers 200 with 50 MB; the client takes 64 KiB and hangs up."""
    receiver = HostileReceiver("huge", size=50 * 2**20).start()
    tracemalloc.start()
    try:
        drained, given_up, _ = asyncio.run(deliver(receiver.url, DeliverySettings(timeout_s=10), drain_s=60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        time.sleep(0.5)  # let the server notice the closed connection
        receiver.stop()
    assert drained and given_up == []  # 2xx: delivered
    assert receiver.sent < 20 * 2**20, receiver.sent  # the rest never left: at most the socket buffers
    assert peak < 20 * 2**20, peak  # reading it whole held 50 MB and more


@pytest.mark.parametrize(("field", "value"), [
    ("url", "ftp://127.0.0.1/hook"), ("url", "127.0.0.1:8080/hook"), ("url", "http:///hook"), ("url", "not a url"),
    ("secret", "s3cr3t"), ("secret", "whsec_not*base64!"), ("secret", "whsec_"),
])
def test_invalid_endpoints_are_refused_at_construction(field: str, value: str) -> None:
    endpoint = {"url": "https://127.0.0.1/hook", "secret": SECRET, field: value}
    with pytest.raises(ValidationError) as err:
        EndpointConfig.model_validate(endpoint)
    assert err.value.errors()[0]["loc"] == (field,)


def test_a_bad_endpoint_is_named_without_its_credentials(tmp_path: Path) -> None:
    config = tmp_path / "endpoints.json"
    config.write_text(json.dumps([{"url": "https://127.0.0.1/ok", "secret": SECRET},
                                  {"url": "https://bob:hunter2@hooks.example/in?token=sekrit", "secret": "oops-42"}]))
    with pytest.raises(ValueError) as err:
        endpoints_from("", None, DeliverySettings(endpoints_file=config))
    message = str(err.value)
    assert "endpoint 2" in message and "https://hooks.example/in?token=***" in message and "secret" in message
    assert "hunter2" not in message and "sekrit" not in message and "oops-42" not in message, message


def test_replay_with_a_bad_endpoint_fails_at_start_with_a_clear_error(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "orders.jsonl"
    src.write_bytes(lines([order("o1", 0, 5), tick(30)]))
    done = subprocess.run([stormwatch_bin, "replay", str(src), "--alerts-out", str(tmp_path / "alerts.jsonl")],
                          capture_output=True, timeout=60,
                          env={**os.environ, "STORMWATCH_WEBHOOK_URLS": "http://bob:hunter2@127.0.0.1:9/hook",
                               "STORMWATCH_WEBHOOK_SECRET": "whsec_not*base64!"})
    err = done.stderr.decode()
    assert done.returncode != 0 and "Traceback" not in err, err
    assert "http://127.0.0.1:9/hook" in err and "secret" in err and "hunter2" not in err, err


def test_an_unexpected_error_does_not_kill_the_endpoint(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """One failure in the outbox and one in sending: both logged, and the version still arrives."""
    receiver = Receiver().start()
    send, next_row = Delivery._send, Outbox.next
    failures = {"send": 1, "next": 1}

    async def failing_send(self, *args):  # noqa: ANN001, ANN202
        if failures["send"]:
            failures["send"] -= 1
            raise RuntimeError("boom in send")
        return await send(self, *args)

    def failing_next(self, *args):  # noqa: ANN001, ANN202
        if failures["next"]:
            failures["next"] -= 1
            raise RuntimeError("boom in the outbox")
        return next_row(self, *args)

    monkeypatch.setattr(Delivery, "_send", failing_send)
    monkeypatch.setattr(Outbox, "next", failing_next)
    monkeypatch.setattr(Delivery, "ERROR_PAUSE_S", 0.1, raising=False)
    caplog.set_level(logging.WARNING, logger="stormwatch.delivery")
    try:
        drained, given_up, _ = asyncio.run(deliver(receiver.url, DeliverySettings(backoff_s=0.05), drain_s=15))
    finally:
        receiver.stop()
    assert drained and given_up == [] and len(receiver.accepted) == 1
    assert "boom in send" in caplog.text and "boom in the outbox" in caplog.text


def test_credentials_in_an_endpoint_url_stay_out_of_dead_letters_errors_and_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    """The receiver still gets them (userinfo as basic auth, the query as is); nothing we write shows them."""
    receiver = Receiver(always_fail=True).start()
    url = receiver.url.replace("http://", "http://bob:hunter2@") + "?token=sekrit&v=2"
    caplog.set_level(logging.DEBUG)
    settings = DeliverySettings(backoff_s=0.05, give_up_s=0.5)
    try:
        drained, given_up, delivery = asyncio.run(deliver(url, settings, drain_s=15))
    finally:
        receiver.stop()
    assert drained and len(given_up) == 1
    written = json.dumps(given_up) + caplog.text + " ".join(t.get_name() for t in delivery.tasks)
    assert "hunter2" not in written and "sekrit" not in written, written
    assert given_up[0]["source"] == f"webhook:{receiver.url}?token=***&v=***"
    request = receiver.requests[0]
    assert request["path"] == "/hook?token=sekrit&v=2"
    assert request["headers"]["authorization"] == "Basic " + base64.b64encode(b"bob:hunter2").decode()
