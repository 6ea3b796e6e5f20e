"""The Faust worker: thin agents around the engine core.

Two kinds of reader, both boring on purpose:

* ``ingest`` reads the contract's input topics (with a plain aiokafka consumer of its own, not a
  Faust agent: :mod:`streams.kafka.ingest`), validates each message (bad ones go to
  ``deadletter``), and forwards each valid event once per key to the topic of every stage that
  takes its type, with the source ``topic/partition`` in a header. Ticks are forwarded to every
  partition of those stage topics. What a batch sends to one stage partition from one source
  travels as one record (:mod:`streams.kafka.batches`).
* one ``stage`` agent per stage (:mod:`streams.kafka.stage`; see :func:`streams.registry.stages`:
  the three platform-keyed detectors share one) reads its stage topic in batches and runs an
  :class:`Engine` over the stage's detectors, with Faust tables (changelogged once per batch, see
  :mod:`streams.kafka.state`) as state; alerts go to ``alerts``.

Every Faust agent asks the watchdog (:mod:`streams.kafka.watchdog`) before handling a message. This
module is the wiring: the Faust app, its topics, ``ingest``, the outputs and the web routes.

A stage partition's event time is the minimum over its source partitions (see
``streams.engine``), so alerts do not depend on how Kafka interleaves the sources.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import faust
import orjson

from events import INPUT_TOPICS, DeadLetter, Tick, decode, raw_text
from streams import metrics
from streams.outputs.alertmanager import Alertmanager
from streams.outputs.api import Sources, secure_headers, server_options
from streams.outputs.routes import route_table
from streams.kafka.evidence import EVIDENCE, EvidenceStage, evidence_topic_names, export_from_kafka
from streams.outputs.delivery import make_delivery
from streams.registry import build_detectors, placements, refuser, routes, stages
from streams.settings import Settings, bootstrap_servers
from streams.kafka.batches import Outbox
from streams.kafka.consumer import use_consumer
from streams.kafka.ingest import Ingest
from streams.kafka.stage import RAW_BYTES, SOURCE_HEADER, Decoded, stage_agent, tick_json
from streams.kafka.watchdog import watch
from streams.kafka.view import ClusterView

log = logging.getLogger("stormwatch.worker")


def stage_topic_name(settings: Settings, stage: str) -> str:
    return settings.topic(f"{settings.app_id}-stage-{stage}")


def topic_names(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes, besides Faust's own changelogs."""
    topics = [stage_topic_name(settings, name) for name in stages(build_detectors(settings))]
    return ([settings.topic(t) for t in (*INPUT_TOPICS, "alerts", "deadletter")] + topics
            + evidence_topic_names(settings))


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or Settings()
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=settings.producer_batch_bytes,
        producer_max_request_size=settings.producer_request_bytes,
        # Only Stormwatch's own routes: Faust's /router, /table, /graph and statistics pages list
        # raw detector state with no token. Every response gets the API's security headers.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        web_application_options={"middlewares": [secure_headers]},
    )
    # Faust builds its aiohttp runner with no client time limits and has no setting for them.
    app.web._runner._kwargs.update(server_options(settings.web_timeout_s))
    use_consumer(app, settings.fetch_wait_ms)
    raw = RAW_BYTES
    input_names = [settings.topic(t) for t in INPUT_TOPICS]
    alerts_topic = app.topic(settings.topic("alerts"), **raw)
    deadletter_topic = app.topic(settings.topic("deadletter"), **raw)
    detectors = build_detectors(settings)
    routable = refuser(detectors, settings.platform_ids())
    groups = stages(detectors)
    stage_topics = {name: app.topic(stage_topic_name(settings, name), partitions=settings.partitions, **raw)
                    for name in groups}
    takers, fed_by = routes(settings, groups)

    consumed: set[str] = set()  # topics whose partitions the watchdog follows; filled below
    admit = watch(app, settings, consumed)

    async def dead_letter(letter: DeadLetter):  # noqa: ANN202 - Faust's future of the send
        metrics.DEADLETTERS.labels(letter.reason).inc()
        return await deadletter_topic.send(value=orjson.dumps(letter.to_record()))

    evidence = EvidenceStage(app, settings, list(groups), admit) if settings.evidence.worker else None
    targets = {**stage_topics, **({EVIDENCE: evidence.topic} if evidence is not None else {})}  # for outboxes

    decoded = Decoded()  # events this worker validated or made, for its stages (see Decoded)
    stage_of_topic = {topic.get_topic_name(): name for name, topic in stage_topics.items()}

    @app.on_partitions_revoked.connect
    async def forget_decoded(_app, _revoked, **_kwargs) -> None:  # noqa: ANN001 - Faust's signal signature
        decoded.own(())

    @app.on_partitions_assigned.connect
    async def own_decoded(_app, _assigned, **_kwargs) -> None:  # noqa: ANN001 - Faust's signal signature
        decoded.own((stage_of_topic[tp.topic], tp.partition) for tp in app.assignor.assigned_actives()
                    if tp.topic in stage_of_topic)

    async def ingest_one(message, outbox: Outbox, sent: list) -> None:  # noqa: ANN001 - aiokafka's ConsumerRecord
        """Validate one input message and route it: into ``outbox`` once per stage key, on that
        key's partition (Kafka's partitioner); a tick to every partition of the stages it feeds.
        A dead letter's send goes to ``sent``: the batch is committed once Kafka has it."""
        source = f"{message.topic}/{message.partition}"
        try:
            raw, where = message.value or b"", f"{source}@{message.offset}"
            parsed = routable(decode(raw, where, now=time.time(), max_future_s=settings.max_future_s), raw, where)
            if isinstance(parsed, DeadLetter):
                sent.append(await dead_letter(parsed))
                return
            if isinstance(parsed, Tick):
                for name in fed_by.get(message.topic, ()):
                    for p in range(settings.partitions):
                        outbox.add(name, p, source, None, message.value)
                if evidence is not None:
                    evidence.input_tick(outbox, message.value, source)
                return
            into = set()  # the stage partitions it goes into: a record each, which reads it once (Decoded)
            for name, members in takers.get(parsed.type, {}).items():
                for partition, key in placements(members, parsed, settings.partitions):
                    into.add((name, partition))
                    outbox.add(name, partition, source, key.encode(), message.value)
            decoded.put(raw, parsed, decoded.readers(into))
            if evidence is not None:
                evidence.input_event(outbox, parsed, message.value, source)
        except Exception as err:  # a bad message must never stop the agent
            log.exception("ingest failed on %s", source)
            sent.append(await dead_letter(DeadLetter(f"ingest failed: {err!r}", "worker_error",
                                                     raw_text(message.value or b""), source)))

    ingest = Ingest(settings, input_names, ingest_one,
                    send=lambda outbox, sent: outbox.send(targets, SOURCE_HEADER, sent),
                    crash=app.crash, ready=decoded.room, session_s=app.conf.broker_session_timeout,
                    heartbeat_s=app.conf.broker_heartbeat_interval)

    @app.task
    async def read_input() -> None:
        await ingest.run()

    @app.on_before_shutdown.connect
    async def stop_ingest(*_args, **_kwargs) -> None:  # before Faust stops the producer
        await ingest.stop()

    @app.timer(5.0)
    async def input_lag() -> None:
        await ingest.measure_lag()

    @app.timer(5.0)
    async def paused_partitions() -> None:
        try:
            metrics.PAUSED_PARTITIONS.set(await app.consumer.paused_in_fetcher())
        except Exception:  # the consumer is starting or stopping: the next round
            log.debug("paused partitions not counted", exc_info=True)

    engines = {name: stage_agent(app, settings, name, groups, targets, alerts_topic, dead_letter, admit, evidence,
                                 decoded) for name in groups}
    orders = next((engine for engine in engines.values() if "orders" in engine.by_name), None)
    view = ClusterView(settings.view_horizon_s)

    def now(platform: str) -> float:
        """The platform's event time at the ledger here; a worker that owns none of the ledger's
        partitions (or none where the platform's time moved) goes by the alerts."""
        local = max((w.of(platform) for w in orders.watermarks.values()), default=-math.inf) if orders else -math.inf
        return local if local > -math.inf else view.now(platform)

    sources = Sources(alerts=view.alerts, ledger=view.ledger, now=now)

    @app.task
    async def follow_view() -> None:
        """The API's view of every platform (see :mod:`streams.kafka.view`)."""
        topics = [alerts_topic.get_topic_name()]
        if orders is not None:  # STORMWATCH_DETECTORS may leave the ledger out
            topics.append(orders.by_name["orders"].state.table.changelog_topic.get_topic_name())
        await view.follow(bootstrap_servers(settings.broker), *topics)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    delivery = make_delivery(
        settings, lambda record: asyncio.ensure_future(deadletter_topic.send(value=orjson.dumps(record))),
        str(settings.data_dir / f"{settings.app_id}-webhooks.sqlite"))
    alertmanager = Alertmanager(settings.alertmanager) if settings.alertmanager.url else None
    outputs = [o for o in (delivery, alertmanager) if o is not None]
    if outputs:
        @app.task
        async def start_outputs() -> None:
            for output in outputs:
                output.start()

        @app.agent(alerts_topic, name="deliver")
        async def deliver(stream: faust.StreamT) -> None:
            """Queue each alert version for webhooks and Alertmanager; sending happens in the background."""
            async for event in stream.events():
                for message in await admit(event.message):
                    try:
                        alert = orjson.loads(message.value)
                        for output in outputs:
                            output.submit(alert)
                    except Exception:  # a malformed record on the alerts topic must not stop delivery
                        log.exception("cannot queue an alert for delivery")

    if settings.tick_interval_s > 0:
        @app.timer(settings.tick_interval_s)
        async def wall_clock_tick() -> None:
            """Advance event time with no traffic, so deadlines fire on a quiet live stream."""
            value = tick_json(time.time())
            for name in input_names:
                for p in range(settings.partitions):
                    await app.topic(name, **raw).send(value=value, partition=p)

    consumed |= {t.get_topic_name() for t in stage_topics.values()}
    if outputs:
        consumed.add(alerts_topic.get_topic_name())

    export = (lambda alert_id: export_from_kafka(settings, alert_id)) if evidence is not None else None
    app.web.web_app.router.add_routes(route_table(settings.api_tokens, sources, health=_readiness(app), export=export))

    return app


def _readiness(app: faust.App) -> Callable[[], dict]:
    """``/healthz``'s report: ready once the worker's first partitions are assigned and their
    tables recovered (Faust's "Worker ready"), and from then on. Its web server answers about
    three seconds before that on a first start (it creates some forty topics), and events sent
    meanwhile waited that long (session 15's "warm-up"). A later rebalance does not make it
    unready: it is brief, and a liveness probe must not restart a worker for it."""
    ready = False

    def report() -> dict:
        nonlocal ready
        ready = ready or app.tables.recovery.completed.is_set()
        return {"ready": ready}

    return report
