"""What a worker's API reads: every platform's alerts and orders, whichever worker found them.

A worker's stages own only some partitions, so what they hold in memory covers only some
platforms. The view tails two topics from their start with a plain consumer outside the
consumer group: ``alerts`` (the latest version of each alert) and the order ledger's changelog
(the ledger's state, as every worker writes it). So any worker answers for every platform, a
moment behind the stages: the changelog is written at the end of each stage batch. The view
holds what the API serves anyway: latest alert versions, and ledger records, which expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime
from typing import Any

import orjson

log = logging.getLogger("stormwatch.view")


class ClusterView:
    """Latest alert versions and the ledger's records, applied from their topics."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict] = {}
        self.ledger: dict[str, Any] = {}
        self.latest_ts = -math.inf  # event time of the newest alert seen: "now" for a worker with no ledger partition

    def apply_alert(self, value: bytes) -> None:
        try:
            alert = orjson.loads(value)
            alert_id, version = alert["alert_id"], alert["version"]
        except Exception:  # not an alert: the API shows what it can
            return
        if alert.get("shadow"):
            return  # shadow alerts are recorded on the topic, not shown
        current = self.alerts.get(alert_id)
        if current is None or current["version"] <= version:
            self.alerts[alert_id] = alert
        try:
            self.latest_ts = max(self.latest_ts, datetime.fromisoformat(alert["ts"]).timestamp())
        except (KeyError, TypeError, ValueError):
            pass

    def apply_ledger(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record (JSON key and value, as Faust writes them); no value deletes."""
        if key is None:
            return
        try:
            name = orjson.loads(key)
        except orjson.JSONDecodeError:
            return
        if value is None:
            self.ledger.pop(name, None)
            return
        try:
            self.ledger[name] = orjson.loads(value)
        except orjson.JSONDecodeError:
            return

    async def follow(self, bootstrap: list[str], alerts_topic: str, ledger_topic: str | None = None) -> None:
        """Tail both topics for as long as the worker runs (restarting the consumer on errors)."""
        from aiokafka import AIOKafkaConsumer  # faust-streaming's Kafka client

        topics = [alerts_topic] + ([ledger_topic] if ledger_topic else [])
        while True:
            consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                        enable_auto_commit=False, auto_offset_reset="earliest",
                                        metadata_max_age_ms=5000)
            try:
                await consumer.start()
                while True:
                    batches = await consumer.getmany(timeout_ms=500)
                    for tp, messages in batches.items():
                        for message in messages:
                            if tp.topic == alerts_topic:
                                self.apply_alert(message.value)
                            else:
                                self.apply_ledger(message.key, message.value)
            except Exception:  # not CancelledError: the worker stopping ends the loop
                log.warning("the API view lost its consumer; starting again", exc_info=True)
                self.alerts.clear()
                self.ledger.clear()  # read again from the start
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
