"""Running ``stormwatch worker`` as a real process against the test broker, and reading topics."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from kafka import KafkaConsumer

from tests.support.kafka_broker import KafkaBroker, free_port


@dataclass
class Worker:
    """One worker process; ``env`` is shared by the ``produce`` calls of the same test."""

    broker: KafkaBroker
    bin: str
    logdir: Path
    app_id: str = field(default_factory=lambda: f"sw-{uuid.uuid4().hex[:8]}")
    partitions: int = 3
    process: subprocess.Popen | None = None
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STORMWATCH_BROKER": f"kafka://{self.broker.bootstrap}",
            "STORMWATCH_APP_ID": self.app_id,
            "STORMWATCH_TOPIC_PREFIX": f"{self.app_id}.",
            "STORMWATCH_STORE": "memory://",
            "STORMWATCH_PARTITIONS": str(self.partitions),
            "STORMWATCH_TICK_INTERVAL_S": "0",
            "STORMWATCH_WEB_PORT": str(self.port),
            "STORMWATCH_DATA_DIR": str(self.logdir / "data"),
            "STORMWATCH_API_TOKENS": '{"reg": {"role": "regulator"}, "weibo": {"role": "platform", "platform": "weibo"}}',
            **self.extra_env,
        }

    def start(self, timeout: float = 60) -> "Worker":
        """Start the process and wait for its web server; stopped again if it never comes up."""
        log = open(self.logdir / f"worker-{self.app_id}-{time.monotonic_ns()}.log", "wb")
        self.process = subprocess.Popen([self.bin, "worker", "-l", "info"], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited early; see {log.name}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError("worker web server did not come up")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def produce(self, path: Path) -> subprocess.CompletedProcess:
        done = subprocess.run([self.bin, "produce", str(path)], env=self.env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        return done

    def read(self, topic: str, until: int, **kwargs) -> list[dict]:
        """Records of one of the contract's topics, under this worker's prefix."""
        return read_topic(self.broker, f"{self.app_id}.{topic}", until, **kwargs)

    def api(self, path: str, token: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def samples(self, *families: str) -> list:
        """The samples of the named metric families on the worker's ``/metrics``, from one scrape
        (a counter's family is its name without ``_total``)."""
        from prometheus_client.parser import text_string_to_metric_families

        return [s for f in text_string_to_metric_families(self.metrics()) if f.name in families for s in f.samples]


def read_topic(broker: KafkaBroker, topic: str, until: int, timeout: float = 90, settle: float = 3.0) -> list[dict]:
    """Read ``topic`` from the start until ``until`` records came, then ``settle`` seconds more for extras."""
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=500)
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                records.append(orjson.loads(message.value))
            if len(records) >= until:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return records
