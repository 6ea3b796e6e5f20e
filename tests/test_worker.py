"""The worker's own rules, most with no broker (the Kafka restart tests exercise them live)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
from faust.types import TP

from streams.kafka.watchdog import Progress
from tests.support.kafka_broker import topic_with

STALL = Progress.STALL_S


def test_a_partition_fetched_past_what_the_agents_handled_is_stuck_once_it_stops_moving() -> None:
    progress = Progress()
    # At assignment the group had committed (next to read): posts/0 5, posts/1 3, orders/0 2.
    progress.assigned({("posts", 0): 5, ("posts", 1): 3, ("orders", 0): 2})
    progress.mark(SimpleNamespace(tp=("posts", 1), offset=6))
    # posts/0: nothing new. posts/1: handled up to 6, fetched to 9. orders/0: fetched to 4,
    # none of it handled. reports/0: never committed by the group, so not watched.
    positions = {("posts", 0): 5, ("posts", 1): 9, ("orders", 0): 4, ("reports", 0): 7}
    assert progress.stuck(positions, now=0.0) == {}
    progress.mark(SimpleNamespace(tp=("posts", 1), offset=7))  # a backlog that moves is not a stall
    assert progress.stuck(positions, now=STALL - 1) == {}
    assert progress.stuck(positions, now=STALL) == {("orders", 0): 2}
    assert progress.stuck(positions, now=STALL - 1 + STALL) == {("posts", 1): 8}
    assert progress.stuck(positions, now=STALL + 1) == {}  # after a re-read: a whole period again
    progress.assigned({})  # a new assignment forgets the old partitions
    assert progress.stuck(positions, now=10 * STALL) == {}


def test_a_partition_never_fetched_is_re_read_ever_less_often_until_an_agent_handles_it() -> None:
    """The watchdog passes the partition's end offset when it is further than the consumer's
    position: a partition Faust left paused is stuck too. Each re-read that brings no progress
    doubles the wait before the next one, up to STALL_MAX_S; progress resets it."""
    progress = Progress()
    progress.assigned({("orders", 0): 1})
    stuck = {("orders", 0): 2}
    assert progress.stuck(stuck, now=0.0) == {}
    assert progress.stuck(stuck, now=STALL) == {("orders", 0): 1}
    assert progress.stuck(stuck, now=STALL + 5) == {}  # the re-read gets a whole period
    assert progress.stuck(stuck, now=2 * STALL) == {}  # and then twice as long
    assert progress.stuck(stuck, now=3 * STALL) == {("orders", 0): 1}
    assert progress.stuck(stuck, now=3 * STALL + 3 * STALL) == {}
    assert progress.stuck(stuck, now=3 * STALL + 4 * STALL) == {("orders", 0): 1}
    now = 7 * STALL
    for _ in range(6):  # the wait stops growing at STALL_MAX_S
        now += Progress.STALL_MAX_S
        assert progress.stuck(stuck, now=now) == {("orders", 0): 1}
    progress.mark(SimpleNamespace(tp=("orders", 0), offset=1))  # handled at last
    assert progress.stuck({("orders", 0): 3}, now=now + 1) == {}
    assert progress.stuck({("orders", 0): 3}, now=now + 1 + STALL) == {("orders", 0): 2}  # back to STALL_S


def test_a_gap_is_re_read_from_where_it_starts_and_commits_wait_for_it() -> None:
    """Issue 13: single events never reached a stage, with the committed offsets behind them."""
    progress = Progress()
    tp = ("posts", 3)
    progress.assigned({tp: 877})  # next to read: 877
    assert progress.admit(tp, 877, now=0.0) == (True, None)
    assert progress.admit(tp, 878, now=0.1) == (True, None)
    assert progress.admit(tp, 880, now=0.2) == (True, 879)  # 879 never came: re-read from it
    assert progress.admit(tp, 881, now=0.3) == (True, None)  # the re-read is under way
    assert progress.commit_cap(tp) == 879  # Faust may not commit past the hole
    assert progress.admit(tp, 882, now=0.2 + Progress.GAP_RETRY_S) == (True, 879)  # the re-read was lost too
    assert progress.admit(tp, 879, now=6.0) == (True, None)  # the re-read arrives
    assert progress.admit(tp, 880, now=6.0) == (True, None)  # duplicates: the engine's seen-set drops them
    assert progress.admit(tp, 878, now=6.0) == (False, None)  # handled already
    assert progress.admit(tp, 881, now=6.0) == (True, None)
    assert progress.admit(tp, 882, now=6.0) == (True, None)
    assert progress.commit_cap(tp) == 883 and progress.gaps == {} and progress.ahead == {}


def test_commits_stop_at_the_oldest_record_a_stage_still_buffers() -> None:
    """Replayed buffers: a stage's buffered events are read again after a restart because
    Faust never commits past their record."""
    progress = Progress()
    tp = ("stage-platform", 2)
    progress.assigned({tp: 100})
    held: dict[int, int] = {2: 103}
    progress.holds["stage-platform"] = held.get
    for offset in range(100, 110):
        progress.admit(tp, offset, now=0.0)
    assert progress.commit_cap(tp) == 103  # handled up to 109, but 103's events wait
    del held[2]  # released
    assert progress.commit_cap(tp) == 110
    assert progress.commit_cap(("stage-platform", 1)) is None  # not assigned here


def test_a_hole_that_re_reads_never_fill_is_passed_after_a_while() -> None:
    """A re-read that never arrives must not keep commits behind for good."""
    progress = Progress()
    tp = ("orders", 0)
    progress.assigned({tp: 10})
    asked = [progress.admit(tp, 15 + n, now=n * Progress.GAP_RETRY_S) for n in range(Progress.MAX_REREADS)]
    assert asked == [(True, 10)] * Progress.MAX_REREADS
    assert progress.admit(tp, 40, now=999.0) == (True, None)
    assert progress.commit_cap(tp) == 41


def test_a_partition_never_seen_starts_where_its_first_message_is() -> None:
    progress = Progress()
    assert progress.commit_cap(("reports", 1)) is None  # not an agent's partition: Faust decides
    assert progress.admit(("reports", 1), 42, now=0.0) == (True, None)
    assert progress.admit(("reports", 1), 43, now=0.0) == (True, None)


def test_faust_never_commits_past_what_the_agents_handled_contiguously() -> None:
    """Faust's own rule commits over one missing offset at the head of the acked ones."""
    from streams.kafka.watchdog import _guard_consumer

    tp = ("posts", 0)
    consumer = SimpleNamespace(_committed_offset={tp: 100}, _new_offset=lambda _tp: 201,  # acked 101..200
                               _read_offset={tp: 150})
    progress = Progress()
    progress.assigned({tp: 100})
    _guard_consumer(consumer, progress)
    assert consumer._new_offset(tp) is None  # 100 was never handled
    progress.admit(tp, 100, now=0.0)
    progress.admit(tp, 101, now=0.0)  # contiguous: the mark moves
    assert consumer._new_offset(tp) == 102
    assert consumer._new_offset(("stage", 1)) == 201  # a partition no agent reads: Faust's answer
    assert consumer._read_offset[tp] is None  # Faust's fetch loop drops nothing as already read
    _guard_consumer(consumer, progress)  # once per consumer
    assert consumer._new_offset(tp) == 102


@pytest.mark.parametrize("detectors", ["", "water_army", "post_targets,targets", "cascades"])
def test_the_worker_builds_with_any_set_of_detectors(detectors: str, tmp_path) -> None:
    """Agents, stages and the API view are wired without a broker; the ledger may be left out."""
    from streams.kafka.app import create_app, topic_names
    from streams.settings import Settings

    settings = Settings(detectors=detectors, app_id=f"build-{len(detectors)}", data_dir=tmp_path, store="memory://")
    app = create_app(settings)
    stages = sorted(name.rsplit("-stage-", 1)[1] for name in topic_names(settings) if "-stage-" in name)
    army = ["army_accounts", "army_objects", "army_pairs"]
    assert stages == {"": [*army, "cascades", "orders", "platform", "posts", "targets", "water_army"],
                      "water_army": [*army, "water_army"], "post_targets,targets": ["posts", "targets"],
                      "cascades": ["cascades", "platform"]}[detectors]
    assert sorted(agent.split("-", 1)[1] for agent in app.agents if agent.startswith("stage-")) == stages


def test_the_consumer_is_guarded_before_any_assignment(tmp_path) -> None:
    """Faust's fetch loop binds the read offsets when it starts, and the table recovery of an
    assignment starts it beside the assignment's handlers: the guard must already be there
    when the revoke that precedes every assignment (the first one too) is signalled."""
    import asyncio

    from streams.kafka.app import create_app
    from streams.kafka.watchdog import _NoReadOffsets
    from streams.settings import Settings

    app = create_app(Settings(app_id="guard", data_dir=tmp_path, store="memory://"))
    assert not isinstance(app.consumer._read_offset, _NoReadOffsets)
    asyncio.run(app.on_partitions_revoked.send(set()))
    assert isinstance(app.consumer._read_offset, _NoReadOffsets)


def test_the_broker_holds_a_fetch_of_the_input_or_stage_topics_at_most_the_configured_wait(tmp_path) -> None:
    """Faust fixes the wait at 1.5 s; a fetch of quiet stage partitions then held the busy ones
    back as long (:mod:`streams.kafka.consumer`). The worker's consumer is built with the setting
    instead, the rest of Faust's options unchanged (its group, no auto-commit); so is the
    ingest's consumer."""
    import asyncio

    from streams.kafka.app import create_app
    from streams.kafka.ingest import Ingest
    from streams.settings import Settings

    async def built(**overrides: object) -> tuple:
        app = create_app(Settings(app_id="wait", data_dir=tmp_path, store="memory://", **overrides))
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms, consumer._group_id, consumer._enable_auto_commit
        finally:
            await consumer.stop()

    assert asyncio.run(built()) == (100, "wait", False)
    assert asyncio.run(built(fetch_wait_s=0.02)) == (20, "wait", False)

    async def ingest_wait(**overrides: object) -> tuple:
        consumer = Ingest(Settings(app_id="wait", **overrides), ["t"], None, None, None)._consumer()
        try:
            return consumer._fetch_max_wait_ms, consumer._group_id
        finally:
            await consumer.stop()

    assert asyncio.run(ingest_wait()) == (100, "wait-ingest")
    assert asyncio.run(ingest_wait(fetch_wait_s=0.02)) == (20, "wait-ingest")


def test_the_producer_packs_a_partitions_changes_into_batches_of_the_configured_size(tmp_path) -> None:
    """aiokafka's producer keeps one request in flight, and a partition's next batch waits until
    the last one left: with its 16 KB batches a busy changelog went out 16 KB a round trip. The
    batches the stages' changes are packed into (the producer's ``create_batch``) take the
    setting, as does the largest request."""
    import asyncio

    from streams.kafka.app import create_app
    from streams.settings import Settings

    async def packed(**overrides: object) -> tuple[int, int]:
        app = create_app(Settings(app_id="batch", data_dir=tmp_path, store="memory://", **overrides))
        producer = app.producer._new_producer()
        try:
            batch, records = producer.create_batch(), 0
            while batch.append(key=b"k", value=b"v" * 1000, timestamp=None) is not None:
                records += 1
            return records, producer._max_request_size
        finally:
            await producer.stop()

    default, request = asyncio.run(packed())
    assert 500 <= default <= 530 and request == Settings().producer_request_bytes >= 2 * Settings().producer_batch_bytes
    assert asyncio.run(packed(producer_batch_bytes=64_000, producer_request_bytes=100_000)) == (63, 100_000)


def test_a_delivery_that_needs_no_wait_ends_in_its_first_step_and_one_that_waits_ends_as_awaited() -> None:
    """``deliver_first`` runs a delivery's first step in place of the four tasks Faust made per
    message: a delivery that did not wait is over; the rest of one that waits, awaited in a task,
    gives the same result, error or cancellation as the whole delivery would have."""
    import asyncio

    from streams.kafka.consumer import deliver_first

    async def scenario() -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        trace: list = []

        async def deliver(value: object) -> str:
            await queue.put(value)  # waits only when the agent's queue is full
            trace.append(value)
            return f"put {value}"

        assert deliver_first(deliver(1)) == (True, "put 1") and trace == [1]

        done, rest = deliver_first(deliver(2))  # the queue is full: it must wait
        assert not done and trace == [1]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0.01)
        assert not task.done()
        assert queue.get_nowait() == 1
        assert await asyncio.wait_for(task, 1) == "put 2" and trace == [1, 2]

        async def fails_after(future: asyncio.Future) -> None:
            await future
            raise ValueError("after the wait")

        future = asyncio.get_running_loop().create_future()
        done, rest = deliver_first(fails_after(future))
        task = asyncio.ensure_future(rest)
        future.set_result(None)
        with pytest.raises(ValueError, match="after the wait"):
            await task

        future = asyncio.get_running_loop().create_future()
        done, rest = deliver_first(fails_after(future))
        task = asyncio.ensure_future(rest)
        future.set_exception(OSError("broker gone"))
        with pytest.raises(OSError, match="broker gone"):
            await task

        cleaned: list = []

        async def cancelled_while_waiting() -> None:
            try:
                await asyncio.sleep(10)
            finally:
                cleaned.append("finally ran")

        done, rest = deliver_first(cancelled_while_waiting())
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["finally ran"]

        async def yields_bare() -> str:
            await asyncio.sleep(0)
            return "after a bare yield"

        done, rest = deliver_first(yields_bare())
        assert not done and await rest == "after a bare yield"

    asyncio.run(scenario())


def test_the_worker_consumer_hands_a_message_over_without_tasks_unless_flow_is_suspended(tmp_path) -> None:
    """The consumer's ``wait_first`` (Faust calls it once per message) returns the delivery's
    result without making a task; when Faust has suspended the flow it waits as mode's does."""
    import asyncio
    import warnings

    from streams.kafka.app import create_app
    from streams.settings import Settings

    async def scenario() -> None:
        consumer = create_app(Settings(app_id="hand", data_dir=tmp_path, store="memory://")).consumer
        made = []
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: made.append(coro) or asyncio.Task(coro, loop=loop, **kw))

        async def deliver(value: int) -> int:
            return value * 2

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a suspend_flow.wait() left unawaited would warn
            results = await consumer.wait_first(deliver(21), consumer.suspend_flow.wait())
        assert (results.results, results.stopped, made) == ([42], False, [])

        consumer.suspend_flow.set()  # a rebalance: mode's wait, which the suspension ends
        results = await consumer.wait_first(asyncio.sleep(10), consumer.suspend_flow.wait())
        assert results.results == [True] and len(made) == 4  # the delivery, the suspension, stop, crash
        loop.set_task_factory(None)

    asyncio.run(scenario())


def test_a_message_below_the_groups_commit_but_never_handled_here_is_handled() -> None:
    """The group's offsets read at assignment and the ones Faust starts from can disagree (seen
    both ways round in restarts): a message before that read is skipped only when this worker
    handled it, never on the read's word alone."""
    progress = Progress()
    tp = ("posts", 1)
    progress.assigned({tp: 891})
    assert progress.admit(tp, 867, now=0.0) == (True, None)  # Faust started earlier than the read
    assert progress.admit(tp, 868, now=0.0) == (True, None)
    assert progress.admit(tp, 867, now=0.1) == (False, None)  # handled here: a re-read is skipped
    assert progress.admit(tp, 891, now=0.2) == (True, None)
    assert progress.commit_cap(tp) == 892


def test_a_batch_waits_until_kafka_acknowledged_its_changelog_messages() -> None:
    """Faust's flush returns with changelog writes still queued; ``delivered`` waits for each
    message's own future, raises a send error, and gives up after its timeout."""
    import asyncio

    from streams.kafka.state import delivered, track_changelog

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        table = SimpleNamespace(send_changelog=lambda *a, **k: loop.create_future())
        sent: list = []
        track_changelog(table, sent)
        first, second = table.send_changelog(0, "k", 1), table.send_changelog(0, "k2", 2)
        assert sent == [first, second]
        loop.call_later(0.05, first.set_result, "acked")
        loop.call_later(0.2, second.set_result, "acked")
        await delivered(sent)
        assert first.done() and second.done() and sent == []

        failing = table.send_changelog(0, "k", 3)
        loop.call_later(0.05, failing.set_exception, OSError("broker gone"))
        with pytest.raises(OSError, match="broker gone"):
            await delivered(sent)

        never = table.send_changelog(0, "k", 5)
        with pytest.raises(TimeoutError):
            await delivered(sent, timeout=0.1)
        never.cancel()

    asyncio.run(scenario())


def test_a_batch_whose_state_was_lost_is_not_committed_and_the_worker_stops() -> None:
    import asyncio

    from streams.kafka.stage import persist

    progress = Progress()
    progress.assigned({("stage", 0): 10})
    for offset in range(10, 20):
        assert progress.admit(("stage", 0), offset, now=0.0) == (True, None)
    assert progress.commit_cap(("stage", 0)) == 20
    crashed: list = []

    async def crash(err: BaseException) -> None:
        crashed.append(err)

    app = SimpleNamespace(crash=crash)
    admit = SimpleNamespace(rewind=progress.rewind)
    batch = [SimpleNamespace(tp=("stage", 0), offset=o) for o in range(15, 20)]

    async def lost() -> None:
        raise OSError("broker gone")

    async def written() -> None:
        pass

    asyncio.run(persist(app, admit, batch, "a batch", [], written))  # acknowledged: nothing moves
    assert progress.commit_cap(("stage", 0)) == 20 and crashed == []
    with pytest.raises(OSError):
        asyncio.run(persist(app, admit, batch, "a batch", [], lost))
    assert progress.commit_cap(("stage", 0)) == 15  # the batch 15-19 never reached the changelog
    assert [str(e) for e in crashed] == ["broker gone"]
    assert progress.admit(("stage", 0), 15, now=1.0) == (True, None)  # read again, handled again

    async def stopping() -> None:
        raise asyncio.CancelledError

    earlier = [SimpleNamespace(tp=("stage", 0), offset=12)]
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(persist(app, admit, earlier, "a batch", [], stopping))
    assert progress.commit_cap(("stage", 0)) == 12 and len(crashed) == 1  # stopping: no crash

    for offset in range(12, 20):
        progress.admit(("stage", 0), offset, now=2.0)
    late = [SimpleNamespace(tp=("stage", 0), offset=o) for o in (18, 14, 15, 16, 17)]  # a seek's re-read came after 18
    with pytest.raises(OSError):
        asyncio.run(persist(app, admit, late, "a batch", [], lost))
    assert progress.commit_cap(("stage", 0)) == 14  # the lowest handled, not the first


def test_a_batch_whose_outputs_did_not_all_leave_keeps_no_state_and_is_read_again() -> None:
    """A batch's outputs are acknowledged before its state is written. When they fail, or the
    worker stops meanwhile, its pending state is dropped and nothing is written: the batch is
    read again whole, never skipped by a seen-set that outlived its lost outputs. Once they
    are out, every state step is attempted, each in turn even when one fails."""
    import asyncio

    from streams.kafka.stage import finish_batch

    tp = ("stage", 0)
    crashed: list = []

    async def crash(err: BaseException) -> None:
        crashed.append(err)

    app = SimpleNamespace(crash=crash)
    batch = [SimpleNamespace(tp=tp, offset=o) for o in range(30, 40)]

    def run(outputs, redo, tables) -> tuple[list, int | None]:  # noqa: ANN001
        progress = Progress()
        progress.assigned({tp: 30})
        for offset in range(30, 40):
            progress.admit(tp, offset, now=0.0)
        done: list = []

        def step(name: str, effect):  # noqa: ANN001, ANN202
            async def write() -> None:
                done.append(name)
                await effect()
            return (name, [], write)

        try:
            asyncio.run(finish_batch(app, SimpleNamespace(rewind=progress.rewind), batch, step("outputs", outputs),
                                     [step("redo", redo), step("tables", tables)], drop=lambda: done.append("drop")))
        except (OSError, asyncio.CancelledError):
            done.append("raised")
        return done, progress.commit_cap(tp)

    async def ok() -> None:
        pass

    async def fails() -> None:
        raise OSError("broker gone")

    async def stops() -> None:
        raise asyncio.CancelledError

    assert run(ok, ok, ok) == (["outputs", "redo", "tables"], 40)
    assert run(stops, ok, ok) == (["outputs", "drop", "raised"], 30)  # stopping: nothing kept, no crash
    assert crashed == []
    assert run(fails, ok, ok) == (["outputs", "drop", "raised"], 30)
    assert [str(e) for e in crashed] == ["broker gone"]
    assert run(ok, fails, ok) == (["outputs", "redo", "tables", "raised"], 30)  # the tables all the same


def test_a_hole_is_read_back_once() -> None:
    progress = Progress()
    tp = ("posts", 1)
    assert progress.hole(tp, 5) is None  # not assigned here: nothing to compare with
    progress.assigned({tp: 3874})
    assert progress.hole(tp, 3874) is None  # the next one
    assert progress.hole(tp, 3902) == 3874
    assert progress.hole(tp, 3903) is None  # asked for already: the seek's turn
    assert progress.hole(tp, 3870) is None  # handled already
    progress.rewind({tp: 3800})  # a batch whose state was lost: its re-read may need the reader again
    assert progress.hole(tp, 3850) == 3800


class _Holes:
    """A hole reader over a list of offsets that exist (``present``)."""

    def __init__(self, present: range) -> None:
        self.present, self.asked = present, []

    async def read(self, tp, first: int, end: int) -> list:  # noqa: ANN001
        self.asked.append((first, end))
        out = []
        for offset in range(first, end):
            if offset not in self.present:
                break
            out.append(SimpleNamespace(tp=tp, topic=tp[0], partition=tp[1], offset=offset))
        return out


def _admit(present: range):  # noqa: ANN202
    import asyncio

    from streams.kafka.watchdog import Admit

    progress, holes, seeks = Progress(), _Holes(present), []

    async def seek(tp, offset: int) -> None:  # noqa: ANN001
        seeks.append((tp, offset))

    admit = Admit(progress, holes, seek)

    def ask(offset: int) -> list[int]:
        message = SimpleNamespace(tp=("stage-platform", 0), topic="stage-platform", partition=0, offset=offset)
        return [m.offset for m in asyncio.run(admit(message))]

    return progress, holes, seeks, ask


def test_the_messages_of_a_hole_are_handled_before_the_message_past_it_in_offset_order() -> None:
    """Seen in the crash test: a start-up rebalance left holes, Faust's seek re-read them after
    later messages (or never), and a stage's watermark passed events that had not arrived:
    alerts built from fewer reposts than replay's. Read back first, they arrive in order."""
    progress, holes, seeks, ask = _admit(range(0, 1000))
    progress.assigned({("stage-platform", 0): 47})
    assert ask(47) == [47]
    assert ask(88) == list(range(48, 89))  # the hole, then the message
    assert holes.asked == [(48, 88)] and seeks == []
    assert ask(60) == []  # Faust's own late copy: handled already
    assert ask(89) == [89]
    assert progress.commit_cap(("stage-platform", 0)) == 90


def test_an_agent_stopped_within_the_messages_of_a_hole_commits_none_after_the_one_it_was_on() -> None:
    """The review's bug: the hole's messages are all admitted before any is handled, so a stop
    between them must take the commit back to the message it stopped on."""
    import asyncio

    from streams.kafka.watchdog import Admit

    progress, holes = Progress(), _Holes(range(0, 100))
    tp = ("posts", 0)

    async def seek(tp, offset: int) -> None:  # noqa: ANN001
        pass

    admit, handled, seen = Admit(progress, holes, seek), [], []

    async def handle(message) -> None:  # noqa: ANN001
        if message.offset == 13:
            raise asyncio.CancelledError
        seen.append(message.offset)

    progress.assigned({tp: 10})
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(admit.each(SimpleNamespace(tp=tp, topic="posts", partition=0, offset=20), handled, handle))
    assert seen == [10, 11, 12] and [m.offset for m in handled] == [10, 11, 12, 13]
    assert progress.commit_cap(tp) == 13  # 13-20 were admitted, not handled: read again


def test_a_hole_that_cannot_be_read_back_is_left_to_the_seek() -> None:
    progress, holes, seeks, ask = _admit(range(0, 50))  # 50 on are gone (or the broker is busy)
    progress.assigned({("stage-platform", 0): 47})
    assert ask(47) == [47]
    assert ask(60) == [48, 49, 60]  # what could be read, then the message all the same
    assert seeks == [(("stage-platform", 0), 50)]
    assert progress.commit_cap(("stage-platform", 0)) == 50  # not past the rest of the hole
    assert ask(61) == [61]  # neither read back again nor sought again within GAP_RETRY_S
    assert holes.asked == [(48, 60)] and len(seeks) == 1


@pytest.mark.kafka
def test_the_hole_reader_reads_a_hole_of_a_real_topic_with_its_headers(kafka_broker) -> None:
    import asyncio

    from streams.kafka.watchdog import HoleReader

    topic = topic_with(kafka_broker.bootstrap, 30)

    async def read() -> tuple[list, list, list]:
        holes = HoleReader(kafka_broker.bootstrap, "test-holes")
        holes.TIMEOUT_S = 3.0  # the tail read waits this long for offsets that never come
        try:
            return (await holes.read(TP(topic, 0), 10, 20), await holes.read(TP(topic, 0), 25, 40),
                    await holes.read(TP(topic, 0), 3, 4))
        finally:
            await holes.close()

    middle, tail, one = asyncio.run(read())
    assert [(m.offset, m.key, m.value) for m in middle] == [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(10, 20)]
    assert middle[0].headers == [("stormwatch-source", b"posts/0")] and middle[0].tp == (topic, 0)
    assert [m.offset for m in tail] == list(range(25, 30))  # up to the end of the partition, within the time bound
    assert [m.value for m in one] == [b"v3"]


@pytest.mark.kafka
def test_an_agent_given_a_message_past_a_hole_gets_the_hole_from_kafka_first(kafka_broker) -> None:
    """The admission an agent asks, with the real reader: messages 10-49 never reached the
    agent (as at a rebalance), message 50 did. The agent gets 10-49 from Kafka, then 50; Faust's
    late copies of them are skipped; no seek is needed and commits may go past the hole."""
    import asyncio

    from streams.kafka.watchdog import Admit, HoleReader

    topic = topic_with(kafka_broker.bootstrap, 60)
    progress, seeks = Progress(), []

    async def seek(tp, offset: int) -> None:  # noqa: ANN001
        seeks.append(offset)

    async def run() -> list[list]:
        admit = Admit(progress, HoleReader(kafka_broker.bootstrap, "test-admit"), seek)
        progress.assigned({TP(topic, 0): 0})
        try:
            given = []
            for offset in [*range(10), 50, 20, 51]:
                message = SimpleNamespace(tp=TP(topic, 0), topic=topic, partition=0, offset=offset,
                                          value=f"v{offset}".encode())
                given.append([m.value for m in await admit(message)])
            return given
        finally:
            await admit.holes.close()

    given = asyncio.run(run())
    assert given[:10] == [[f"v{i}".encode()] for i in range(10)]
    assert given[10] == [f"v{i}".encode() for i in range(10, 51)]  # the hole, in order, then 50
    assert given[11:] == [[], [b"v51"]]  # Faust's late copy of 20: handled already
    assert seeks == [] and progress.commit_cap(TP(topic, 0)) == 52


def test_the_worker_is_healthy_only_once_ready(tmp_path) -> None:
    """The contract's ``/healthz`` is "200 when ready". A worker's web server answers seconds
    before its first partitions are assigned and their tables recovered (a first start creates
    some forty topics), and events fed on its word waited that long. Once ready, it stays so
    through later rebalances: a liveness probe must not restart a worker for one."""
    import asyncio

    from streams.kafka.app import create_app
    from streams.settings import Settings

    app = create_app(Settings(app_id="ready", data_dir=tmp_path, store="memory://"))
    healthz = next(route.handler for route in app.web.web_app.router.routes()
                   if route.resource is not None and route.resource.canonical == "/healthz")

    def answer() -> tuple[int, str]:
        response = asyncio.run(healthz(None))
        return response.status, orjson.loads(response.body)["status"]

    assert answer() == (503, "starting")
    app.tables.recovery.completed.set()
    assert answer() == (200, "ok")
    app.tables.recovery.completed.clear()  # a rebalance begins
    assert answer() == (200, "ok")


def test_the_inputs_a_worker_decoded_are_kept_within_bounds() -> None:
    """Stages take the ingest's event for the same bytes; the newest messages up to a budget of
    bytes are kept, none over ``max_bytes``, so large or many posts cannot grow the worker; an
    event leaves once each stage partition it went into has read it."""
    from events import decode
    from streams.kafka.stage import Decoded

    def post(i: int, text: str = "") -> bytes:
        return orjson.dumps({"type": "post", "event_id": f"e{i}", "platform": "weibo", "ts": "2026-01-01T00:00:00Z",
                             "post_id": f"p{i}", "account_id": "a", "kind": "original", "text": text})

    lines = [post(i) for i in range(5)]
    decoded = Decoded(budget=3 * len(lines[0]), max_bytes=400)
    for line in lines:
        decoded.put(line, decode(line, "test"), readers=2)
    decoded.put(lines[4], decode(lines[4], "test"))  # the same bytes again: one reader more, kept once
    assert list(decoded.events) == lines[2:] and decoded.size == 3 * len(lines[0])  # the oldest went
    assert [decoded.get(bytes(line)) is not None for line in lines] == [False, False, True, True, True]
    assert decoded.get(bytes(lines[4])).post_id == "p4"  # equal bytes, not the same object
    assert decoded.get(bytes(lines[3])) is not None  # its second reader: then it is gone
    assert decoded.get(bytes(lines[3])) is None and lines[3] not in decoded.events
    assert decoded.get(bytes(lines[4])) is not None and decoded.get(bytes(lines[4])) is None  # three readers
    assert list(decoded.events) == [lines[2]] and decoded.size == len(lines[0])
    big = post(9, "x" * 500)
    decoded.put(big, decode(big, "test"))
    assert decoded.get(big) is None and len(decoded.events) == 1
    many = [post(100 + i) for i in range(2000)]  # far more than the budget: the newest stay
    for line in many:
        decoded.put(line, None)
    assert decoded.size <= decoded.budget and list(decoded.events)[-1] == many[-1] and lines[2] not in decoded.events
    again = Decoded(budget=2 * len(lines[0]), max_bytes=400)
    again.put(lines[0], "first")
    again.put(lines[1], "second")
    again.put(lines[0], "ignored")  # a duplicate's readers come later: it is the newest now
    again.put(lines[2], "third")  # so the budget takes lines[1]
    assert list(again.events) == [lines[0], lines[2]] and again.get(lines[0]) == "first"


def test_decoded_events_wait_only_for_this_workers_readers_and_a_stage_shares_what_it_decoded() -> None:
    """An event is kept for the stage partitions this worker reads (none before an assignment,
    and what was kept goes at the next one), so a reader on another worker never holds it in
    the budget; the ingest waits while more than half the budget waits for readers, at most its
    limit; what a stage decoded itself the next stage here takes, within its own budget."""
    import asyncio
    import time

    from streams.kafka.stage import Decoded

    lines = [orjson.dumps({"type": "tick", "ts": f"2026-01-01T00:00:0{i}Z"}) for i in range(6)]
    size = len(lines[0])
    decoded = Decoded(budget=4 * size, max_bytes=400, recent_budget=2 * size)
    into = [("posts", 0), ("posts", 1), ("army_objects", 1)]
    assert decoded.readers(into) == 0  # no assignment yet: nothing is kept
    decoded.put(lines[0], "zero", decoded.readers(into))
    assert decoded.get(lines[0]) is None and not decoded.events
    decoded.own([("posts", 1), ("army_objects", 1), ("army_pairs", 0)])
    assert decoded.readers(into) == 2
    decoded.put(lines[1], "one", decoded.readers(into))
    assert decoded.get(lines[1]) == "one" and decoded.get(lines[1]) == "one" and decoded.get(lines[1]) is None
    decoded.put(lines[2], "two", 2)
    decoded.own([("posts", 0)])  # a new assignment: its readers may be elsewhere now
    assert decoded.get(lines[2]) is None and decoded.size == 0

    async def waited(limit_s: float) -> float:
        started = time.monotonic()
        await decoded.room(limit_s=limit_s, poll_s=0.005)
        return time.monotonic() - started

    decoded.put(lines[3], "three")
    decoded.put(lines[4], "four")
    assert decoded.size == 2 * size and asyncio.run(waited(5.0)) < 1.0  # half the budget: room
    decoded.put(lines[5], "five")
    assert asyncio.run(waited(0.05)) >= 0.05  # over half: it waits, until its limit

    async def read_soon() -> float:
        async def reader() -> None:
            await asyncio.sleep(0.05)
            decoded.get(lines[3])  # a stage reads one: room again

        task = asyncio.create_task(reader())
        took = await waited(5.0)
        await task
        return took

    assert 0.04 <= asyncio.run(read_soon()) < 1.0
    for i, line in enumerate(lines[:3]):  # decoded by stages here: shared, the oldest out past the budget
        decoded.remember(line, f"decoded {i}")
    decoded.remember(lines[2], "again")  # kept once
    assert decoded.get(lines[0]) is None and decoded.get(lines[1]) == "decoded 1"
    assert decoded.get(lines[1]) == "decoded 1" and decoded.get(lines[2]) == "decoded 2"  # not counted as read
    assert decoded.recent_size == 2 * size
    decoded.remember(orjson.dumps({"text": "x" * 500}), "too big")
    assert len(decoded.recent) == 2


def test_a_batchs_table_writes_land_while_the_next_runs_holding_its_commits_and_the_next_redo_record() -> None:
    """A stage leaves its batch's table writes to be acknowledged while the next batch runs.
    Until they are, the commits stay at the batch's first records (its hold), and the next redo
    record waits (``wait``): it replaces this batch's, which must outlive any lost write. A write
    that fails stops the worker and keeps the hold."""
    import asyncio

    from streams.kafka.stage import Landing

    async def scenario() -> list:
        loop = asyncio.get_running_loop()
        crashed: list = []

        async def crash(err: BaseException) -> None:
            crashed.append(err)

        landing = Landing(crash, "stage t")
        seen = []
        first, second = loop.create_future(), loop.create_future()
        landing.add([first, second], {0: 40, 2: 7})
        landing.add([], {1: 3})  # nothing written: nothing held
        seen.append((landing.hold(0), landing.hold(1), landing.hold(2)))
        waiter = asyncio.ensure_future(landing.wait())
        first.set_result(None)
        await asyncio.sleep(0)
        seen.append((waiter.done(), landing.hold(0)))  # one write still on its way
        second.set_result(None)
        await waiter
        await asyncio.sleep(0)
        seen.append((landing.hold(0), landing.hold(2)))
        failing = loop.create_future()
        landing.add([failing], {0: 90})
        failing.set_exception(OSError("broker gone"))
        for _ in range(20):  # the acknowledgement's task, then the crash's
            await asyncio.sleep(0)
        seen.append((landing.hold(0), [repr(e) for e in crashed]))
        try:
            await landing.wait()
        except OSError as err:
            seen.append(repr(err))
        return seen

    assert asyncio.run(scenario()) == [(40, None, 7), (False, 40), (None, None),
                                       (90, ["OSError('broker gone')"]), "OSError('broker gone')"]
