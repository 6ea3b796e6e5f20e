"""Prometheus metrics shared by the worker and ``demo`` (one registry per process)."""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

EVENTS = Counter("stormwatch_events", "Input messages received, by topic (or file).", ["topic"], registry=REGISTRY)
DEADLETTERS = Counter("stormwatch_deadletter", "Inputs rejected to the dead-letter output, by reason.", ["reason"], registry=REGISTRY)
ALERTS = Counter("stormwatch_alerts", "Alert versions raised, by kind.", ["kind"], registry=REGISTRY)
WEBHOOKS = Counter("stormwatch_webhook_deliveries", "Webhook delivery attempts, by result "
                   "(delivered, failed, retried, given_up).", ["result"], registry=REGISTRY)
CONSUMER_LAG = Gauge("stormwatch_consumer_lag", "Messages behind the end of each assigned partition (worker).",
                     ["topic", "partition"], registry=REGISTRY)
WATCHDOG_REREADS = Counter("stormwatch_watchdog_rereads", "Partitions the worker's watchdog re-read because they "
                           "stalled (fetched or written, not handled, for 20 s).", registry=REGISTRY)
BUFFERED = Gauge("stormwatch_stage_buffered_events", "Events an ordered stage holds until event time passes "
                 "them, by stage and partition (worker).", ["stage", "partition"], registry=REGISTRY)
PAUSED_PARTITIONS = Gauge("stormwatch_consumer_paused_partitions", "Partitions assigned to the worker's consumer "
                          "of the stage topics that it does not fetch: the tables' changelogs once recovered, and "
                          "every partition while Faust rebalances (worker).", registry=REGISTRY)
GAPS_REREAD = Counter("stormwatch_gaps_reread", "Times an agent got an offset past the next one it expected on a "
                      "partition (a gap), so the worker re-read the partition from there.", registry=REGISTRY)
HOLE_MESSAGES = Counter("stormwatch_hole_messages_read_back", "Messages the worker read back with a consumer of its "
                        "own because Faust never handed them to an agent (a hole before a later offset).",
                        registry=REGISTRY)
LATENCY = Histogram(
    "stormwatch_processing_seconds",
    "Time to validate and process one event through a stage.",
    ["stage"],
    buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)

STAGE_BATCHES = Counter("stormwatch_stage_batches", "Batches a stage finished (worker); its entries per batch are "
                        "stormwatch_processing_seconds_count over this.", ["stage"], registry=REGISTRY)
STATE_WRITES = Counter("stormwatch_state_writes", "Changed records a stage wrote at its batches' ends (worker), one "
                       "changelog message each: a record changed by many events of a batch is written once.",
                       ["stage"], registry=REGISTRY)
STAGE_DECODES = Counter("stormwatch_stage_decodes", "Entries a stage decoded and validated from their bytes (worker): "
                        "those the worker had not decoded already (an event another worker's ingest or stage wrote, "
                        "or one past the worker's memory of decoded events).", ["stage"], registry=REGISTRY)

API_SKIPPED = Counter("stormwatch_api_records_skipped", "Records an API answer left out because they could not be "
                      "shown (malformed or hostile), by endpoint.", ["endpoint"], registry=REGISTRY)


class Tally:
    """Observations of one histogram child gathered in plain Python and added to it at once by
    :meth:`flush`: prometheus_client takes a lock for the sum and for the bucket at every
    ``observe``, which cost a worker 22 µs per event over its stage entries (session 25, py-spy).
    The stages flush at the end of each batch, so a scrape is at most one batch behind. The
    buckets are the child's own (``_upper_bounds``, ``_buckets``, ``_sum``: prometheus_client's
    attributes, pinned with its version; ``test_a_tally_exposes_what_observing_does`` holds the
    output to what ``observe`` gives)."""

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.bounds = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        self.total += amount
        if amount == amount:  # as observe: NaN joins the sum and no bucket
            self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound is >= amount (+Inf last)

    def flush(self) -> None:
        if not any(self.counts) and self.total == 0.0:
            return
        for bucket, count in zip(self.child._buckets, self.counts):
            if count:
                bucket.inc(count)
        self.child._sum.inc(self.total)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class ConsumerLag:
    """``stormwatch_consumer_lag`` for one consumer's partitions (the Faust consumer's, the
    ingest's): each measure sets the assigned ones and removes those it no longer holds, which
    another worker reports now."""

    def __init__(self) -> None:
        self.labels: set[tuple[str, str]] = set()

    async def measure(self, consumer) -> dict:  # noqa: ANN001 - Faust's consumer or aiokafka's
        """Set the gauge; returns the position of each assigned partition that has one."""
        assignment = consumer.assignment()
        assigned = {(tp.topic, str(tp.partition)) for tp in assignment}
        for labels in self.labels - assigned:
            CONSUMER_LAG.remove(*labels)
        self.labels = assigned
        positions = {}
        for tp in assignment:
            try:
                position, highwater = await consumer.position(tp), consumer.highwater(tp)
            except Exception:  # not fetched yet, or being revoked: the next round
                continue
            if position is not None and highwater is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))
            if position is not None:
                positions[tp] = position
        return positions


def exposition() -> bytes:
    return generate_latest(REGISTRY)
