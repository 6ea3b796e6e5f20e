"""Event-to-webhook latency at steady input rates, and deliveries per second to one endpoint.

The load is the simulator's stream (posts, engagement, reports) fed at a steady wall-clock rate,
its event times rewritten to the moment each event is fed, so event time runs with the wall
clock as on a live platform. Four times a second (every ``rate // 4``-th event, at least every
25th) an event is followed by two probes: a regulator order and its refusal (the latency is
from feeding the refusal to a real HTTP receiver on 127.0.0.1 getting the signed
``order_refused`` webhook), and a defamatory post with an engagement update that takes it to
5,000 views (from feeding the update to the ``legal_threshold`` webhook: through Kafka a
cascades alert crosses one stage more, from the cascade watch to the author-keyed raiser).
Through Kafka the simulator's and the probes' cascades are keyed by root.
Ordered stages release an event once event time passes it, so the allowed lateness is part of
the latency: it is set to 0 here (one in-order source).
Through Kafka, time also moves by the worker's wall-clock ticks (every 0.2 s here).
Probes sent in the first ``--warmup`` seconds (default 5) are reported apart (their count and
slowest) and left out of p50 / p99. In session 15 the first refusals waited up to 4.6 s, which
made a 10-second run's median about 2 s: the harness fed the worker once ``/healthz`` answered,
seconds before the worker had joined its group and recovered its tables. ``/healthz`` now
answers 503 until then (session 16), so the first seconds measure a worker that runs.

Run: ``python -m benchmarks.delivery`` (starts its own Kafka broker for the Kafka figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from events import format_ts  # noqa: E402
from commands.simulator import SimConfig, simulate  # noqa: E402
from tests.support.receiver import Receiver  # noqa: E402


def load(n: int) -> list[dict]:
    events = [e for e in simulate(SimConfig(minutes=max(1, n // 1200 + 1))) if e["type"] in ("post", "engagement", "report")]
    return events[:n]


def refusal_pair(k: int, now: float) -> list[dict]:
    order = {"type": "order", "event_id": f"bo{k}", "platform": "bench", "ts": format_ts(now), "order_id": f"bench-{k}",
             "regulator": "cac", "deadline": format_ts(now + 3600), "legal_basis": "规定", "measures": ["remove_content"],
             "items": [{"post_id": f"bench-post-{k}"}]}
    refusal = {"type": "platform_action", "event_id": f"br{k}", "platform": "bench", "ts": format_ts(now),
               "action_id": f"refusal-{k}", "order_id": f"bench-{k}", "action": "refused"}
    return [order, refusal]


def threshold_pair(k: int, now: float) -> list[dict]:
    post = {"type": "post", "event_id": f"bp{k}", "platform": "bench", "ts": format_ts(now), "post_id": f"bench-rumor-{k}",
            "account_id": f"bench-author-{k}", "kind": "original", "labels": ["defamation"]}
    views = {"type": "engagement", "event_id": f"bv{k}", "platform": "bench", "ts": format_ts(now),
             "post_id": f"bench-rumor-{k}", "views": 5000}
    return [post, views]


class Load:
    """The paced input: event ``i`` is due ``i / rate`` seconds after the start, stamped with the
    wall time it is fed at, and four times a second one is followed by an order and its refusal."""

    def __init__(self, rate: int, seconds: float, warmup: float) -> None:
        self.rate = rate
        self.every = max(rate // 4, 25)
        self.events = load(int(rate * seconds))
        self.start = time.monotonic()
        self.warm_until = time.time() + warmup  # probes sent before: reported apart

    def wait(self, i: int) -> float:
        return self.start + i / self.rate - time.monotonic()

    def batch(self, i: int) -> list[dict]:
        event = {**self.events[i], "ts": format_ts(time.time())}
        probe = i % self.every == self.every - 1
        return [event] + (refusal_pair(i, time.time()) + threshold_pair(i, time.time()) if probe else [])

    def achieved(self) -> float:
        return len(self.events) / (time.monotonic() - self.start)


def percentiles(samples: list[float]) -> dict:
    samples = sorted(samples)
    if not samples:
        return {"n": 0}
    q = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else samples * 99
    return {"n": len(samples), "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1)}


def summary(rate: int, achieved: float, sent: dict[str, float], got: dict[str, float], warm_until: float) -> dict:
    """Latency from sending each probe's last event to its webhook arriving, per probe; the
    probes sent before ``warm_until`` apart (``warmup``: how many, the slowest)."""
    out: dict = {"rate": rate, "achieved_rate": round(achieved)}
    for probe, kind in (("refusal", "order_refused"), ("threshold", "legal_threshold")):
        mine = {k: t for k, t in sent.items() if k.startswith(kind + ":")}
        steady = {k: t for k, t in mine.items() if t >= warm_until}
        early = [got[k] - t for k, t in mine.items() if t < warm_until and k in got]
        out[probe] = {**percentiles([got[k] - t for k, t in steady.items() if k in got]),
                      "missing": len([k for k in mine if k not in got]),
                      "warmup": {"n": len(mine) - len(steady), "max_ms": round(max(early, default=0) * 1000, 1)}}
    return out


def sent_key(event: dict) -> str | None:
    """The probe an event ends, as :func:`arrivals` names its alert; None for other events."""
    if event["type"] == "platform_action":
        return "order_refused:" + event["order_id"]
    if event["type"] == "engagement" and event["platform"] == "bench":
        return "legal_threshold:" + event["post_id"]
    return None


def arrivals(receiver: Receiver) -> dict[str, float]:
    out = {}
    for record in receiver.accepted:
        alert = orjson.loads(record["body"])
        if alert["kind"] in ("order_refused", "legal_threshold") and alert["platform"] == "bench":
            out[f"{alert['kind']}:{alert['subject']['id']}"] = record["received"]
    return out


async def in_process(rate: int, seconds: float, warmup: float, receiver: Receiver) -> dict:
    from streams.local import LocalPipeline
    from streams.outputs.delivery import make_delivery
    from streams.settings import Settings

    settings = Settings(webhook_urls=receiver.url, allowed_lateness_s=0)
    delivery = make_delivery(settings, print)
    delivery.start()
    pipeline = LocalPipeline(settings, lambda a: delivery.submit(a.model_dump()), lambda _d: None)
    sent: dict[str, float] = {}
    paced = Load(rate, seconds, warmup)
    for i in range(len(paced.events)):
        if (ahead := paced.wait(i)) > 0:
            await asyncio.sleep(ahead)
        for event in paced.batch(i):
            if (key := sent_key(event)) is not None:
                sent[key] = time.time()
            pipeline.feed(orjson.dumps(event), "bench")
        if i % 50 == 0:
            await asyncio.sleep(0)
    achieved = paced.achieved()
    await delivery.drain(timeout=60)
    await delivery.stop()
    return summary(rate, achieved, sent, arrivals(receiver), paced.warm_until)


async def deliveries_per_second(receiver: Receiver, n: int = 3000) -> float:
    from streams.outputs.delivery import Delivery, DeliverySettings, EndpointConfig, Outbox

    delivery = Delivery([EndpointConfig(url=receiver.url)], DeliverySettings(), Outbox(), print)
    delivery.start()
    start = time.monotonic()
    for k in range(n):
        delivery.submit({"alert_id": f"x-{k}", "version": 1, "kind": "bench", "severity": "info", "platform": "p"})
    await delivery.drain()
    elapsed = time.monotonic() - start
    await delivery.stop()
    return n / elapsed


def through_kafka(rate: int, seconds: float, warmup: float, receiver: Receiver) -> dict:
    from kafka import KafkaProducer

    from events.decode import route
    from tests.support.kafka_broker import KafkaBroker
    from tests.support.worker import Worker

    stormwatch = str(Path(sys.executable).with_name("stormwatch"))
    with KafkaBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        worker = Worker(broker, stormwatch, Path(tmp), extra_env={
            "STORMWATCH_WEBHOOK_URLS": receiver.url, "STORMWATCH_TICK_INTERVAL_S": "0.2",
            "STORMWATCH_ALLOWED_LATENESS_S": "0",
            "STORMWATCH_CASCADES__ROOT_IDS_GIVEN": '["weibo", "bench"]'}).start()
        try:
            # Topics exist once the worker is up; produce directly, paced, with the contract's keys.
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2)
            prefix = f"{worker.app_id}."
            sent: dict[str, float] = {}
            paced = Load(rate, seconds, warmup)
            for i in range(len(paced.events)):
                if (ahead := paced.wait(i)) > 0:
                    time.sleep(ahead)
                for e in paced.batch(i):
                    line = orjson.dumps(e)
                    topic, key = route(line)  # the contract's topic and key, as `stormwatch produce` does
                    producer.send(prefix + topic, line, key=key)
                    if (probe := sent_key(e)) is not None:
                        producer.flush()
                        sent[probe] = time.time()
            achieved = paced.achieved()
            producer.flush()
            deadline = time.monotonic() + 60
            while len(arrivals(receiver)) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            worker.stop()
    return summary(rate, achieved, sent, arrivals(receiver), paced.warm_until)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=5, help="seconds whose probes are reported apart")
    parser.add_argument("--skip-kafka", action="store_true")
    args = parser.parse_args()
    for rate in args.rates:
        receiver = Receiver().start()
        print("in process ", asyncio.run(in_process(rate, args.seconds, args.warmup, receiver)), flush=True)
        receiver.stop()
    receiver = Receiver().start()
    print(f"deliveries to one endpoint: {asyncio.run(deliveries_per_second(receiver)):,.0f}/s", flush=True)
    receiver.stop()
    if not args.skip_kafka:
        for rate in args.rates:
            receiver = Receiver().start()
            print("via Kafka  ", through_kafka(rate, args.seconds, args.warmup, receiver), flush=True)
            receiver.stop()


if __name__ == "__main__":
    os.environ.setdefault("STORMWATCH_TICK_INTERVAL_S", "0")
    main()
