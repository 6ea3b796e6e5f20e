"""What a worker's API reads: every platform's alerts and orders, whichever worker found them.

A worker's stages own only some partitions, so what they hold in memory covers only some
platforms. The view tails two topics with a plain consumer outside the consumer group:
``alerts`` (the latest version of each alert) and the order ledger's changelog (the ledger's
state, as every worker writes it). So any worker answers for every platform, a moment behind
the stages: the changelog is written at the end of each stage batch.

Both stay bounded. Ledger records expire through the changelog's deletes, and the changelog
(compacted) is read from its start. Alerts are kept for a **horizon** (``view_horizon_s``,
default seven days) of event time: the latest version of each alert whose ``ts`` is within the
horizon of the newest ``ts`` of its platform's alerts (each platform's time is its own: one
stamping its alerts' events days ahead must not push another's out of the view). On start the alerts topic is read from the first message
produced within the horizon of the wall clock (Kafka's timestamps are produce time), not from
offset 0; a partition with nothing that recent is read from its start, so a quiet topic still
shows its last alerts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from typing import Any

import orjson

log = logging.getLogger("stormwatch.view")

VIEW_HORIZON_S = 7 * 86400.0  # the default of Settings.view_horizon_s


class ClusterView:
    """Latest alert versions within the horizon and the ledger's records, applied from their topics."""

    def __init__(self, horizon_s: float = VIEW_HORIZON_S) -> None:
        self.horizon_s = horizon_s
        self.alerts: dict[str, dict] = {}  # the API holds this very dict: changed in place, never replaced
        self.alert_ts: dict[str, float] = {}  # event time of each kept alert, for pruning
        self.kept: dict[str, dict[str, float]] = {}  # platform -> its kept alerts' event times
        self.ledger: dict[str, Any] = {}
        # platform -> event time of its newest alert: "now" for a worker with no ledger partition
        self.latest: dict[str, float] = {}
        self.pruned_at: dict[str, float] = {}  # platform -> its latest at its last prune

    @property
    def latest_ts(self) -> float:
        """The newest alert's event time, any platform's."""
        return max(self.latest.values(), default=-math.inf)

    def now(self, platform: str) -> float:
        return self.latest.get(platform, -math.inf)

    def apply_alert(self, value: bytes) -> None:
        try:
            alert = orjson.loads(value)
            alert_id, version = alert["alert_id"], alert["version"]
            ts = datetime.fromisoformat(alert["ts"]).timestamp()
        except Exception:  # not an alert (the API sorts by ts, so none without one): the API shows what it can
            return
        if alert.get("shadow"):
            return  # shadow alerts are recorded on the topic, not shown
        platform = str(alert.get("platform"))
        latest = self.latest[platform] = max(self.latest.get(platform, -math.inf), ts)
        current = self.alerts.get(alert_id)
        if current is not None and current["version"] > version:
            return
        kept = self.kept.setdefault(platform, {})
        if ts < latest - self.horizon_s:  # the latest version is already past the horizon
            self.alerts.pop(alert_id, None)
            self.alert_ts.pop(alert_id, None)
            kept.pop(alert_id, None)
        else:
            self.alerts[alert_id] = alert
            self.alert_ts[alert_id] = kept[alert_id] = ts
        if latest - self.pruned_at.get(platform, -math.inf) >= self.horizon_s / 10:
            self.prune(platform)

    def prune(self, platform: str) -> None:
        """Drop the platform's alerts older than its horizon. Run each time its newest ts moves on
        by a tenth of the horizon: the view holds at most 1.1 horizons of each platform's alerts,
        and each prune's scan is paid for by the alerts of a tenth of a horizon."""
        latest, kept = self.latest[platform], self.kept[platform]
        cutoff = latest - self.horizon_s
        for alert_id in [a for a, ts in kept.items() if ts < cutoff]:
            del self.alerts[alert_id], self.alert_ts[alert_id], kept[alert_id]
        self.pruned_at[platform] = latest

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
            positioned: set = set()
            try:
                await consumer.start()
                while True:
                    await self.skip_to_horizon(consumer, alerts_topic, positioned)
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
                self.alert_ts.clear()
                self.ledger.clear()  # read again from the start
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()

    async def skip_to_horizon(self, consumer, alerts_topic: str, positioned: set) -> None:  # noqa: ANN001
        """Start each newly assigned ``alerts`` partition at its first message produced within the
        horizon of now, or at its start when it has none that recent (the consumer's default).

        Without a consumer group the consumer assigns itself every partition as metadata shows
        them, so this runs before each fetch. A partition assigned during a fetch may hand over a
        few messages from its start first: they are applied and pruned like any other.
        """
        assigned = {tp for tp in consumer.assignment() if tp.topic == alerts_topic}
        positioned &= assigned  # a partition assigned again is positioned again
        new = assigned - positioned
        if not new:
            return
        since_ms = max(0, int((time.time() - self.horizon_s) * 1000)) if math.isfinite(self.horizon_s) else 0
        found = await consumer.offsets_for_times({tp: since_ms for tp in new})
        for tp in new:
            if found.get(tp) is not None:
                consumer.seek(tp, found[tp].offset)
        positioned |= new
