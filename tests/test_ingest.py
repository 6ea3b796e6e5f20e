"""The worker's ingest on a real broker: it commits a batch only once its records left, a
partition new to its group starts where the worker's Faust group left it, and two ingests
sharing the input lose nothing across their rebalance (streams.kafka.ingest)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from streams.kafka.ingest import Ingest
from streams.settings import Settings
from tests.support.kafka_broker import topic_with

pytestmark = pytest.mark.kafka


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def _commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    """Commit ``offset`` of partition 0 for ``group``, as the worker's Faust group once did."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, None, -1)})
    consumer.close()


class _Run:
    """An :class:`Ingest` over ``topic`` whose route notes each message's value and whose send
    fails while ``fail`` is set."""

    def __init__(self, bootstrap: str, app_id: str, topic: str, fail: bool = False, delay: float = 0.0,
                 unacknowledged: int | None = None, cancelled: int | None = None, ready=None) -> None:  # noqa: ANN001
        self.routed: list[bytes] = []
        self.delay = delay
        self.unacknowledged = unacknowledged  # the batch (counted from 1) whose records Kafka never acknowledges
        self.cancelled = cancelled  # the batch whose send's future is cancelled
        self.sent_batches = 0
        self.ends: list[int] = []
        self.crashed: list[BaseException] = []
        self.fail = fail
        settings = Settings(broker=f"kafka://{bootstrap}", app_id=app_id, stage_batch=7)
        self.ingest = Ingest(settings, [topic], self.route, self.send, self.crash, ready=ready)

    async def route(self, message, outbox, sent) -> None:  # noqa: ANN001
        self.routed.append(message.value)
        if self.delay:
            await asyncio.sleep(self.delay)

    async def send(self, outbox, sent) -> None:  # noqa: ANN001
        if self.fail:
            raise ConnectionError("the broker refused the stage records")
        self.sent_batches += 1
        self.ends.append(len(self.routed))  # one partition: its offset after the batch
        acknowledged = asyncio.get_running_loop().create_future()
        if self.sent_batches == self.unacknowledged:
            acknowledged.set_exception(ConnectionError("no acknowledgement"))
        elif self.sent_batches == self.cancelled:
            acknowledged.cancel()
        else:
            acknowledged.set_result(None)
        sent.append(acknowledged)

    async def crash(self, err: BaseException) -> None:
        self.crashed.append(err)

    async def until(self, done, timeout: float = 30.0, every: float = 0.25) -> None:  # noqa: ANN001
        """Run the ingest until ``done()`` (asked every ``every`` seconds: a check that reads the
        committed offsets opens an admin client, which blocks this loop, the ingest's own, while
        it connects), its task ends, or ``timeout``."""
        task = asyncio.ensure_future(self.ingest.run())
        try:
            for _ in range(int(timeout / every)):
                if done() or task.done():
                    break
                await asyncio.sleep(every)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if (task.done() and not task.cancelled() and task.exception() is not None and not self.fail
                and self.unacknowledged is None and self.cancelled is None):
            raise task.exception()


def test_a_batch_is_committed_only_once_its_records_left(kafka_broker) -> None:
    """A send that fails stops the worker and commits nothing: the restarted ingest reads every
    message again. A send that works commits each batch: a third run reads nothing."""
    topic, app_id = topic_with(kafka_broker.bootstrap, 20), f"app-{uuid.uuid4().hex[:6]}"

    failing = _Run(kafka_broker.bootstrap, app_id, topic, fail=True)
    asyncio.run(failing.until(lambda: failing.crashed))
    assert failing.crashed and isinstance(failing.crashed[0], ConnectionError)
    assert 0 < len(failing.routed) <= 7  # one batch (stage_batch at most), then the stop
    assert failing.routed == [f"v{i}".encode() for i in range(len(failing.routed))]
    assert _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {}

    working = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(working.until(lambda: _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {0: 20}))
    assert working.routed == [f"v{i}".encode() for i in range(20)] and working.sent_batches >= 3
    assert _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {0: 20}

    again = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(again.until(lambda: False, timeout=6.0))
    assert again.routed == []


def test_the_ingest_reads_only_once_its_stages_are_ready(kafka_broker) -> None:
    """Before each read the ingest awaits ``ready`` (the worker's ``Decoded.room``, so it does not
    outrun its stages): while that waits nothing is read; then every message is, asked again
    before each read."""
    topic, app_id = topic_with(kafka_broker.bootstrap, 20), f"app-{uuid.uuid4().hex[:6]}"
    gate = {"open": False, "asked": 0}

    async def ready() -> None:
        gate["asked"] += 1
        while not gate["open"]:
            await asyncio.sleep(0.05)

    run = _Run(kafka_broker.bootstrap, app_id, topic, ready=ready)

    async def scenario() -> tuple[int, list[bytes]]:
        task = asyncio.ensure_future(run.ingest.run())
        try:
            for _ in range(300):  # it reads the groups' offsets first (carry_over)
                if gate["asked"] or task.done():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)
            asked, shut = gate["asked"], list(run.routed)
            gate["open"] = True
            for _ in range(120):
                if len(run.routed) >= 20 or task.done():
                    break
                await asyncio.sleep(0.25)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return asked, shut

    asked, routed_while_waiting = asyncio.run(scenario())
    assert asked == 1 and routed_while_waiting == []
    assert run.routed == [f"v{i}".encode() for i in range(20)]
    assert gate["asked"] >= 3  # 20 messages, at most 7 a read: asked before each


def test_a_batch_kafka_never_acknowledged_is_not_committed_and_the_worker_stops(kafka_broker) -> None:
    """The first batch commits; the second's records are never acknowledged: the worker stops,
    nothing more is routed or committed, and the restart reads from the second batch on."""
    topic, app_id = topic_with(kafka_broker.bootstrap, 20), f"app-{uuid.uuid4().hex[:6]}"

    run = _Run(kafka_broker.bootstrap, app_id, topic, unacknowledged=2)
    asyncio.run(run.until(lambda: run.crashed, timeout=20.0))
    assert len(run.crashed) == 1 and isinstance(run.crashed[0], ConnectionError)
    assert run.sent_batches == 2 and len(run.routed) == run.ends[1] < 20
    assert _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {0: run.ends[0]}


def test_a_send_whose_future_was_cancelled_stops_the_worker_rather_than_the_reading(kafka_broker) -> None:
    """A cancelled send is not the ingest being stopped: the worker stops (before, the ingest
    ended quietly and the worker ran on reading no input)."""
    topic, app_id = topic_with(kafka_broker.bootstrap, 20), f"app-{uuid.uuid4().hex[:6]}"

    run = _Run(kafka_broker.bootstrap, app_id, topic, cancelled=2)
    asyncio.run(run.until(lambda: run.crashed, timeout=20.0))
    assert len(run.crashed) == 1 and isinstance(run.crashed[0], asyncio.CancelledError)
    assert _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {0: run.ends[0]}


def test_two_workers_carrying_over_at_once_skip_nothing_and_end_forward(kafka_broker) -> None:
    """B reads the groups' offsets (none of its own yet); A then carries the old offset over,
    reads on and commits; B, joining late, starts at the old offset too: it reads A's messages
    again (the stages drop copies), and the group's offset ends where A left it, not back."""
    topic, app_id = topic_with(kafka_broker.bootstrap, 12), f"app-{uuid.uuid4().hex[:6]}"
    _commit(kafka_broker.bootstrap, app_id, topic, 9)
    group = f"{app_id}-ingest"

    late = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(late.ingest.carry_over())
    first = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(first.until(lambda: _committed(kafka_broker.bootstrap, group, topic) == {0: 12}))
    assert first.routed == [b"v9", b"v10", b"v11"]

    async def read_already(*_args) -> None:  # B read before A started (above)
        return None

    late.ingest.carry_over = read_already
    asyncio.run(late.until(lambda: len(late.routed) >= 3 and _committed(kafka_broker.bootstrap, group, topic) == {0: 12}))
    assert late.routed == [b"v9", b"v10", b"v11"]
    after = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(after.until(lambda: False, timeout=6.0))
    assert after.routed == [] and _committed(kafka_broker.bootstrap, group, topic) == {0: 12}


def test_a_worker_stopped_while_input_arrives_stops_cleanly(kafka_broker, stormwatch_bin: str, tmp_path) -> None:
    """SIGTERM while messages keep coming: the ingest stops before Faust stops its producer, so
    no send fails and the worker exits 0 (it crashed at every such stop when the ingest read on)."""
    import threading
    import time

    from kafka import KafkaProducer

    from events import INPUT_TOPICS
    from tests.support.worker import Worker

    worker = Worker(kafka_broker, stormwatch_bin, tmp_path, partitions=2).start(timeout=120)
    topics = [f"{worker.app_id}.{t}" for t in INPUT_TOPICS]
    stop = threading.Event()

    def feed() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
        i = 0
        while not stop.is_set():
            producer.send(topics[i % len(topics)], value=b"not json %d" % i)  # a dead letter each
            i += 1
            if i % 200 == 0:
                time.sleep(0.01)
        producer.flush()
        producer.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        time.sleep(6)
        worker.process.terminate()
        code = worker.process.wait(timeout=90)
    finally:
        stop.set()
        feeder.join()
        worker.stop()
    log = max(tmp_path.glob(f"worker-{worker.app_id}-*.log")).read_text(errors="replace")
    assert "did not reach Kafka" not in log and "Crashed" not in log
    assert code == 0


def test_a_partition_new_to_the_ingests_group_starts_where_the_faust_group_left_it(kafka_broker) -> None:
    """A worker from before the ingest had its own group committed its input in the app's group:
    the ingest goes on from there rather than reading the whole retention again."""
    topic, app_id = topic_with(kafka_broker.bootstrap, 12), f"app-{uuid.uuid4().hex[:6]}"
    _commit(kafka_broker.bootstrap, app_id, topic, 9)

    run = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(run.until(lambda: len(run.routed) >= 3 and
                          _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {0: 12}))
    assert run.routed == [b"v9", b"v10", b"v11"]

    from kafka import KafkaProducer  # three more: the next start goes on from its own commit, not the old one

    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i in range(12, 15):
        producer.send(topic, value=f"v{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    later = _Run(kafka_broker.bootstrap, app_id, topic)
    asyncio.run(later.until(lambda: _committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic) == {0: 15}))
    assert later.routed == [b"v12", b"v13", b"v14"]


def test_two_ingests_sharing_the_input_read_every_message(kafka_broker) -> None:
    """A second ingest joins while the first reads: the group rebalances (each waits for the
    batch in hand), and between them every message is routed, none lost."""
    count = 600
    topic, app_id = topic_with(kafka_broker.bootstrap, count, partitions=4), f"app-{uuid.uuid4().hex[:6]}"
    first = _Run(kafka_broker.bootstrap, app_id, topic, delay=0.01)  # 6 s alone: the second joins meanwhile
    second = _Run(kafka_broker.bootstrap, app_id, topic, delay=0.01)

    def all_committed() -> bool:
        return sum(_committed(kafka_broker.bootstrap, f"{app_id}-ingest", topic).values()) == count

    async def both() -> None:
        one = asyncio.ensure_future(first.until(all_committed, timeout=60.0))
        while not first.routed:
            await asyncio.sleep(0.01)
        await asyncio.gather(one, second.until(all_committed, timeout=60.0))

    asyncio.run(both())
    assert all_committed()
    assert set(first.routed) | set(second.routed) == {f"v{i}".encode() for i in range(count)}
    assert second.routed, "the second ingest was given partitions"
