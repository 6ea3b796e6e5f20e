"""Faust's consumer of the stage topics, with three of its costs taken out.

Faust 0.15.3 (pinned) drives an aiokafka consumer in a thread of its own. Measured in a worker
(docs/BENCHMARKS.md, sessions 26 and 27), three of its habits cost time that is not detection:

* **What it fetches.** Faust pauses a partition in its own bookkeeping only; aiokafka goes on
  fetching every assigned partition, including every table's changelog (assigned for recovery,
  and never read once recovery is over). Each fetched changelog record then sat in aiokafka's
  buffer for good, and while one is younger than aiokafka's prefetch backoff (0.1 s) aiokafka
  sends the broker no fetch at all. Here Faust's pauses are passed on to aiokafka.
* **How long the broker holds a fetch.** Faust fixes 1.5 s. aiokafka leaves a partition whose
  fetched records are still unread out of its next fetch, and sends no other fetch while one is
  in flight; so a fetch that asked only for quiet partitions held the busy ones' next records as
  long. Here the wait is the worker's setting (``STORMWATCH_FETCH_WAIT_S``).
* **How it hands over each message.** Faust awaits each message's delivery to its agent with
  mode's ``wait_first``: four tasks made and three cancelled per message, about 60 µs and several
  turns of the event loop. The delivery almost never waits (it puts the message on the agent's
  queue), so its first step runs here directly, and only a delivery that must wait goes through
  ``wait_first`` as before (:func:`deliver_first`).
"""

from __future__ import annotations

import inspect
from collections.abc import Coroutine, Generator
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults


class _Await:
    """Hand a future that a started coroutine yielded to the task that now runs it."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, None]:
        yield self.future


async def _rest_of(coro: Coroutine, pending: Any) -> Any:
    """Run ``coro`` on from where it stopped, ``pending`` being what it yielded there: in a task,
    exactly as if the task had run it from the start (results, errors and cancellation pass
    through to it)."""
    while True:
        try:
            await _Await(pending)
        except BaseException as err:  # noqa: BLE001 - whatever reaches the task goes on to ``coro``
            try:
                pending = coro.throw(err)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = coro.send(None)
        except StopIteration as stop:
            return stop.value


def deliver_first(coro: Coroutine) -> tuple[bool, Any]:
    """Run ``coro``'s first step: ``(True, result)`` when that ended it, else ``(False, a coroutine
    that runs the rest)`` to be awaited in its place."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, _rest_of(coro, pending)


def _close(coros: list) -> None:
    for coro in coros:  # never awaited: the suspension they would have waited for did not come
        if inspect.iscoroutine(coro):
            coro.close()


def use_consumer(app: faust.App, wait_ms: int) -> None:
    """Make ``app``'s consumer of the stage topics the one below (see the module's docstring)."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):  # noqa: ANN001, ANN202 - Faust's signature
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms  # handed to its fetcher when it starts
            return consumer

        def fetch_exactly(self, paused: set) -> None:
            """Pause in aiokafka what Faust has paused, resume the rest (in this thread's loop:
            aiokafka's pause makes a future)."""
            consumer = self._consumer
            if consumer is None:
                return
            assigned = consumer.assignment()
            want = {TopicPartition(tp.topic, tp.partition) for tp in paused} & assigned
            now = consumer.paused()
            consumer.pause(*(want - now))
            consumer.resume(*(now - want))  # paused() lists assigned partitions only

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        def pause_partitions(self, tps) -> None:  # noqa: ANN001 - Faust's TPs
            super().pause_partitions(tps)
            self._fetch_exactly()

        def resume_partitions(self, tps) -> None:  # noqa: ANN001 - Faust's TPs
            super().resume_partitions(tps)
            self._fetch_exactly()

        def _fetch_exactly(self) -> None:
            thread = getattr(self, "_thread", None)  # None until Faust builds it
            if thread is None:
                return
            try:
                thread.thread_loop.call_soon_threadsafe(thread.fetch_exactly, set(self._paused_partitions))
            except RuntimeError:  # its loop is closed: the consumer has stopped, nothing to fetch
                pass

        async def paused_in_fetcher(self) -> int:
            """How many assigned partitions aiokafka does not fetch, asked in its thread."""
            thread = self._thread
            return await thread.call_thread(lambda: len(thread._consumer.paused()) if thread._consumer else 0)

        async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
            """Faust's one call: ``wait_first(callback(message), self.suspend_flow.wait())``."""
            delivery, *others = coros
            if (timeout is not None or len(others) != 1 or not inspect.iscoroutine(delivery)
                    or self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()):
                return await super().wait_first(*coros, timeout=timeout)
            try:
                done, outcome = deliver_first(delivery)
            except BaseException:
                _close(others)
                raise
            if not done:
                return await super().wait_first(outcome, *others)
            _close(others)
            return WaitResults([delivery], [outcome], False)

    app.transport.Consumer = Consumer
