"""What reading the input costs a Faust worker before any detection: the floor under issue 15's drain.

Issue 15 asks one Kafka worker to drain a one-platform stream at half the rate of ``stormwatch
replay`` on the same machine. The contract puts one event in each input message, and until
session 24 the worker read its input through faust-streaming, so every input event cost a
worker at least what Faust spends delivering one message to an agent, on top of the detection
``replay`` does (since then the ingest reads with a plain aiokafka consumer,
``streams/kafka/ingest.py``: the ``aiokafka`` figure below). This measures those parts on the same stream and the same broker:

* ``replay``: CPU seconds per 10k events of ``stormwatch replay`` (all detectors, in process),
  less the CPU of the same command on a one-line file (start-up, imports);
* ``faust``: a Faust app with one agent over the input topic, reading it in batches as the
  worker's ingest did before session 24 (``take_events``) and doing nothing with the messages;
* ``faust+decode``: the same agent validating each message as the ingest does
  (``events.decode``), which ``replay`` also does, so it is counted once in the ceiling;
* ``aiokafka``: a bare aiokafka consumer (``getmany``) over the same topic: what the client
  under Faust costs by itself.

Each consumer is its own process, measured from the end of its first tenth of the messages to
its last (``time.process_time``, every thread: start-up and the first fetches left out); the
topic is filled first, so each reads as fast as it can. The ceiling printed is the drain a worker doing nothing but read its input through Faust
and run the detectors as ``replay`` does could reach, busy on one core:
``replay / (replay + faust)``, CPU per event; anything a real worker adds (state made durable,
stage records, alerts sent) lowers it.

Run: ``python -m benchmarks.faust_floor [--minutes 30] [--partitions 4]`` (starts its own
broker). Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("faust", "faust+decode", "aiokafka")


def consume(mode: str, bootstrap: str, topic: str, expected: int, out: Path) -> None:
    """Read ``expected`` messages of ``topic`` in the way ``mode`` names, then write the figures
    to ``out`` (JSON) and leave."""
    first: list[float] = []  # CPU and wall clock, and the count, once the first tenth was read
    count = 0

    def seen(n: int) -> bool:
        nonlocal count
        count += n
        if not first and count >= expected // 10:  # past start-up and the first fetches
            first.extend((time.process_time(), time.monotonic(), count))
        if count < expected:
            return False
        cpu, wall = time.process_time() - first[0], time.monotonic() - first[1]
        out.write_text(json.dumps({"mode": mode, "messages": count - first[2], "cpu_s": cpu, "wall_s": wall}))
        return True

    if mode == "aiokafka":
        from aiokafka import AIOKafkaConsumer

        async def run() -> None:
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"floor-{os.getpid()}",
                                        auto_offset_reset="earliest", enable_auto_commit=False)
            await consumer.start()
            try:
                while True:
                    batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                    if seen(sum(len(records) for records in batches.values())):
                        return
            finally:
                await consumer.stop()

        asyncio.run(run())
        return

    import faust

    from events import decode

    app = faust.App(f"floor-{os.getpid()}", broker=f"kafka://{bootstrap}", store="memory://",
                    consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
                    web_enabled=False, producer_linger=0.01)
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    validate = mode == "faust+decode"

    @app.agent(source)
    async def read(stream: faust.StreamT) -> None:  # as the worker's ingest read its input before session 24
        async for batch in stream.take_events(500, within=0.05):
            if validate:
                for event in batch:
                    message = event.message
                    decode(message.value, f"{message.topic}/{message.partition}@{message.offset}", now=time.time())
            if seen(len(batch)):
                os._exit(0)  # the figures are written; Faust's own shutdown is not measured

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def child_cpu(argv: list[str]) -> float:
    """User plus system CPU of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30, help="simulated minutes (default 30, as benchmarks.workers)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the input topic (default 4)")
    parser.add_argument("--consume", choices=MODES, help=argparse.SUPPRESS)  # the child's side
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume, args.bootstrap, args.topic, args.expected, args.out)
        return

    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from benchmarks.workers import stream
    from tests.support.kafka_broker import KafkaBroker

    bin_ = shutil.which("stormwatch", path=str(Path(sys.executable).parent)) or "stormwatch"
    with tempfile.TemporaryDirectory(prefix="sw-floor-") as tmp:
        tmp_path = Path(tmp)
        src, one = tmp_path / "stream.jsonl", tmp_path / "one.jsonl"
        events = stream(src, args.minutes)
        lines = src.read_bytes().splitlines()
        one.write_bytes(lines[0] + b"\n")
        replay = child_cpu([bin_, "replay", str(src), "--alerts-out", str(tmp_path / "a.jsonl")])
        start_up = child_cpu([bin_, "replay", str(one), "--alerts-out", str(tmp_path / "b.jsonl")])
        figures = {"replay": {"cpu_s": replay - start_up, "messages": events}}
        print(f"{events:,} events ({args.minutes} simulated minutes, one platform), {args.partitions} partitions")
        broker = KafkaBroker().start()
        try:
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            admin.create_topics([NewTopic("floor-in", args.partitions, 1)])
            admin.close()
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, batch_size=256_000)
            for line in lines:  # the stream's own keys do not matter here: spread evenly
                producer.send("floor-in", value=line)
            producer.flush()
            producer.close()
            for mode in MODES:
                out = tmp_path / f"{mode}.json"
                subprocess.run([sys.executable, "-m", "benchmarks.faust_floor", "--consume", mode,
                                "--bootstrap", broker.bootstrap, "--topic", "floor-in", "--expected", str(events),
                                "--out", str(out)], cwd=ROOT, check=False, capture_output=True,
                               timeout=600)
                if not out.exists():
                    print(f"{mode}: no figures (the consumer did not finish)")
                    continue
                figures[mode] = json.loads(out.read_text())
        finally:
            broker.stop()
    report(figures)


def report(figures: dict) -> None:
    per_10k = {mode: f["cpu_s"] / f["messages"] * 10_000 for mode, f in figures.items()}
    for mode, cpu in per_10k.items():
        rate = f", {figures[mode]['messages'] / figures[mode]['wall_s']:,.0f} messages/s" \
            if "wall_s" in figures[mode] else ""
        print(f"{mode:>13}: {cpu:.2f} CPU s per 10k events ({cpu * 100:.0f} us per event){rate}")
    if "faust" in per_10k:
        replay, faust = per_10k["replay"], per_10k["faust"]
        print(f"ceiling drain of a Faust worker = replay / (replay + faust) = {replay / (replay + faust):.2f} "
              f"(a worker that reads its input through Faust and runs replay's detectors, nothing else)")
    if "faust+decode" in per_10k and "faust" in per_10k:
        print(f"validation (faust+decode - faust): {per_10k['faust+decode'] - per_10k['faust']:.2f} CPU s per 10k")


if __name__ == "__main__":
    main()
