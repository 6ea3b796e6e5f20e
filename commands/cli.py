"""The ``stormwatch`` command."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import orjson

from events import Alert, DeadLetter
from streams.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Stormwatch: a streaming monitor for online violence (网络暴力).

    Finds water-army campaigns, viral defamation crossing the legal figures, targets under
    attack, and follows every regulator order to its end. Settings come from STORMWATCH_*
    environment variables (see docs/CONFIGURATION.md).

    \b
    Start here:   stormwatch demo          (no broker needed)
    A file:       stormwatch replay events.jsonl --alerts-out alerts.jsonl
    On Kafka:     stormwatch worker   and   stormwatch produce events.jsonl
    """


def progress_console():
    """Where progress bars go: standard error, and only when it is a terminal outside CI, so
    pipes, files and CI logs get the same bytes as before (tests replace this function)."""
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal and not os.environ.get("CI") else None


@contextmanager
def feed_progress(total: int, what: str, counts: Callable[[], dict[str, int]]) -> Iterator[Callable[[int], None]]:
    """A progress bar over ``total`` lines, with the rate and the ``counts`` (dead letters,
    alerts, ...) so far; yields ``update(lines_done)``. Without a terminal, ``update`` does nothing."""
    console = progress_console()
    if console is None:
        yield lambda _done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console, transient=True)
    start = time.monotonic()

    def update(done: int) -> None:
        rate = done / max(time.monotonic() - start, 1e-6)
        shown = " · ".join(f"{value:,} {name}" for name, value in counts().items())
        progress.update(task, completed=done, rate=f"{rate:,.0f} lines/s", counts=shown)

    with progress:
        task = progress.add_task(what, total=total, rate="", counts="")
        yield update
        update(total)


def _writer(path: str | None, default):
    if path is None or path == "-":
        return default, False
    return open(path, "wb"), True


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--alerts-out", metavar="PATH", default="-", show_default=True,
              help="Where alert versions go, as JSON Lines ('-' = standard output).")
@click.option("--deadletter-out", metavar="PATH", default=None,
              help="Where rejected lines go, as JSON Lines (default: standard error).")
@click.option("--partitions", type=click.IntRange(1, 1024), default=None,
              help="Run every stage as N partitions, routed as on Kafka (the same alerts, in another order).")
@click.option("--stats-out", metavar="PATH", default=None,
              help="With --partitions: write events and CPU seconds per stage and partition as JSON.")
@click.option("--evidence-dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the evidence log (raw events each alert cites, signed Merkle tree) to DIR, "
              "a new or empty folder.")
def replay(file: Path, alerts_out: str, deadletter_out: str | None, partitions: int | None,
           stats_out: str | None, evidence_dir: Path | None) -> None:
    """Run every detector over a JSON Lines FILE in process.

    Events of all types mixed, in event-time order; `tick` lines advance time. The same
    file gives byte-identical alert output on every run. With --partitions N the stages run
    as on Kafka with N partitions: the same alerts, written in the order they are raised. With STORMWATCH_WEBHOOK_URLS set,
    alerts are delivered too, and replay exits only when every version was delivered or given
    up on. Exits 0 unless FILE cannot be read.
    """
    from streams.local import LocalPipeline, read_lines, replay_lines
    from streams.outputs.delivery import make_delivery

    try:
        lines = list(read_lines(file))
    except OSError as err:
        raise click.ClickException(f"cannot read {file}: {err.strerror or err}") from err
    alerts, close_alerts = _writer(alerts_out, sys.stdout.buffer)
    dead, close_dead = _writer(deadletter_out, sys.stderr.buffer)

    def on_alert(alert: Alert) -> None:
        alerts.write(alert.to_json() + b"\n")

    def on_deadletter(letter: DeadLetter) -> None:
        dead.write(orjson.dumps(letter.to_record()) + b"\n")

    settings = Settings()
    recorder = _evidence_recorder(settings, evidence_dir) if evidence_dir is not None else None
    delivery = make_delivery(settings, lambda record: dead.write(orjson.dumps(record) + b"\n"))

    def on_alert_delivered(alert: Alert) -> None:
        on_alert(alert)
        if delivery is not None:
            delivery.submit(alert.model_dump())

    if partitions is None:
        pipeline = LocalPipeline(settings, on_alert_delivered, on_deadletter, recorder)
    else:
        from streams.partitioned import PartitionedPipeline

        if recorder is not None:
            raise click.UsageError("--evidence-dir works without --partitions only (one log writer)")
        pipeline = PartitionedPipeline(settings, partitions, on_alert_delivered, on_deadletter)
    counts = (lambda: {"events": pipeline.events, "dead letters": pipeline.deadletters, "alerts": pipeline.alerts})
    with feed_progress(len(lines), "replay", counts) as update:
        if delivery is None:
            for start in range(0, len(lines), CHUNK):
                replay_lines(pipeline, file, lines[start:start + CHUNK], last=start + CHUNK >= len(lines))
                update(min(start + CHUNK, len(lines)))
            if not lines:
                pipeline.finish()
        else:
            asyncio.run(_replay_and_deliver(pipeline, file, lines, delivery, update))
    if stats_out is not None:
        if partitions is None:
            raise click.UsageError("--stats-out needs --partitions")
        Path(stats_out).write_bytes(orjson.dumps(pipeline.stats(), option=orjson.OPT_INDENT_2))
    for handle, close in ((alerts, close_alerts), (dead, close_dead)):
        handle.flush()
        if close:
            handle.close()
    click.echo(
        f"replayed {len(lines)} lines: {pipeline.events} events, {pipeline.deadletters} dead letters, "
        f"{pipeline.alerts} alert versions",
        err=True,
    )
    if recorder is not None:
        recorder.flush()  # the end of the input: what still waits for event time is logged now
        logs = recorder.logs
        logs.close()
        trees = "; ".join(f"{platform!r}: tree size {log.tree_heads[-1]['tree_size']} root "
                          f"{log.tree_heads[-1]['root_hash']}" for platform, log in logs.logs.items() if log.tree_heads)
        click.echo(f"evidence log in {evidence_dir}: {logs.entries} entries in {len(logs.logs)} platform tree(s)"
                   + (f" ({trees})" if trees else "") + f"; public key {logs.public_key}", err=True)


def _evidence_recorder(settings: Settings, directory: Path):
    """The recorder behind a sequencer: raw events and alerts logged in event-time order, as the
    worker's evidence stage logs them (see ``evidence.stream``)."""
    from evidence.recorder import new_recorder
    from evidence.stream import Sequencer

    try:
        recorder, generated = new_recorder(directory, settings.evidence_signing_key, settings.evidence)
    except (FileExistsError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    if generated:
        click.echo("no STORMWATCH_EVIDENCE_SIGNING_KEY: this evidence log is signed with a new key; "
                   f"public key {recorder.logs.public_key} (also in {directory}/public-key)", err=True)
    return Sequencer(recorder, ["file"], settings.evidence.order_margin_s, settings.evidence.max_held_bytes)


def _count_lines(file: Path) -> int:
    with file.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


CHUNK = 2000  # lines fed between progress updates (and, with webhooks, between delivery turns)


async def _replay_and_deliver(pipeline, file: Path, lines, delivery, update: Callable[[int], None]) -> None:
    """Replay while webhooks go out in the background; return when every version was
    delivered or given up on."""
    from streams.local import replay_lines

    delivery.start()
    try:
        for start in range(0, len(lines), CHUNK):
            replay_lines(pipeline, file, lines[start:start + CHUNK], last=start + CHUNK >= len(lines))
            update(min(start + CHUNK, len(lines)))
            await asyncio.sleep(0)  # let the delivery tasks run
        await delivery.drain()
    finally:
        await delivery.stop()


@main.command()
@click.option("--broker", envvar="STORMWATCH_BROKER", default=None,
              help="Kafka bootstrap, e.g. kafka://127.0.0.1:9092 (or STORMWATCH_BROKER).")
@click.option("--web-port", type=int, default=None, help="Port of the web server (metrics, health, API).")
@click.option("--loglevel", "-l", default="warning", show_default=True, help="Faust log level.")
def worker(broker: str | None, web_port: int | None, loglevel: str) -> None:
    """Run a Faust worker on Kafka. Start as many side by side as there are partitions.

    Reads the contract's input topics, writes `alerts` and `deadletter`. State lives in
    changelogged tables, so a restarted worker picks up where it stopped.
    """
    from streams.kafka.app import create_app, topic_names
    from commands.produce import ensure_topics
    from streams.runtime import tune_gc

    overrides = {k: v for k, v in {"broker": broker, "web_port": web_port}.items() if v is not None}
    settings = Settings(**overrides)
    ensure_topics(settings, topic_names(settings))
    app = create_app(settings)
    tune_gc(settings.gc_threshold, settings.gc_middle_passes)
    sys.argv = ["stormwatch", "worker", "--loglevel", loglevel, "--web-port", str(settings.web_port),
                "--web-host", settings.web_host]
    app.main()


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--broker", envvar="STORMWATCH_BROKER", default=None,
              help="Kafka bootstrap (or STORMWATCH_BROKER).")
def produce(file: Path, broker: str | None) -> None:
    """Send a JSON Lines FILE to the input topics, each line to the topic of its `type`.

    Keys are the contract's natural ids; `tick` lines go to every partition of every input
    topic; lines that cannot be routed go to `deadletter`.
    """
    from commands.produce import produce_file

    from commands.produce import ProduceReport

    settings = Settings(**({"broker": broker} if broker else {}))
    report = ProduceReport()
    counts = (lambda: {"sent": report.sent, "ticks": report.ticks, "dead letters": report.deadletters})
    total = _count_lines(file) if progress_console() is not None else 0
    with feed_progress(total, "produce", counts) as update:
        report = produce_file(file, settings, on_progress=update, report=report)
    click.echo(f"sent {report.sent} events, {report.ticks} ticks (to every partition), "
               f"{report.deadletters} unroutable lines to deadletter", err=True)


@main.command()
@click.option("--replay", "replay_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Feed this JSON Lines file instead of the simulator (then keep serving).")
@click.option("--port", type=int, default=8686, show_default=True, help="Web server port on 127.0.0.1.")
@click.option("--speed", type=float, default=60.0, show_default=True,
              help="Event-time seconds per wall second (60 = a simulated hour in a minute; 0 = full speed).")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed.")
@click.option("--minutes", type=int, default=60, show_default=True, help="Length of the simulated stream.")
@click.option("--exit-when-done", is_flag=True, help="Stop after the feed instead of serving on.")
def demo(replay_file: Path | None, port: int, speed: float, seed: int, minutes: int, exit_when_done: bool) -> None:
    """Run everything in process with a simulated platform: no broker needed.

    The simulator plays an hour of a platform: ordinary posts, a water army flooding one
    person in waves, a defamatory rumour going viral, reports, and regulator orders (one
    completed, one overdue, one refused). Alerts print as they are raised; metrics are
    served at http://127.0.0.1:PORT/metrics.
    """
    import asyncio

    from commands.demo import DemoOptions, run_demo

    options = DemoOptions(replay=replay_file, port=port, speed=speed, seed=seed, minutes=minutes,
                          exit_when_done=exit_when_done)
    try:
        asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--events", type=int, default=200_000, show_default=True, help="At least this many events.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed.")
def bench(events: int, seed: int) -> None:
    """Measure replay throughput beside raw json.loads of the same lines, in one run."""
    from commands.bench import run_bench

    run_bench(events, seed, echo=click.echo)


@main.group()
def evidence() -> None:
    """Evidence bundles for prosecutors: export one alert's, verify one offline."""


@evidence.command("export")
@click.argument("alert_id")
@click.option("--evidence-dir", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The evidence log (written by replay --evidence-dir or demo).")
@click.option("--from-kafka", is_flag=True, help="Read the worker's log instead: the evidence-log topic "
              "(STORMWATCH_EVIDENCE__WORKER=true; broker and topic prefix from STORMWATCH_* settings).")
@click.option("--broker", envvar="STORMWATCH_BROKER", default=None,
              help="With --from-kafka: Kafka bootstrap (or STORMWATCH_BROKER).")
@click.option("--out", "out", metavar="FILE", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where the ZIP bundle goes.")
def evidence_export(alert_id: str, evidence_dir: Path | None, from_kafka: bool, broker: str | None, out: Path) -> None:
    """Write the bundle of ALERT_ID: manifest.json (alert versions, raw events, hashes, inclusion
    proofs, signed tree heads, public key) and summary.md (中文 / English)."""
    from evidence.bundle import NotFound, export
    from evidence.log import PlatformLogs

    if (evidence_dir is None) == (not from_kafka):
        raise click.UsageError("give either --evidence-dir DIR or --from-kafka")
    where = evidence_dir or "the evidence-log topic"
    try:
        if from_kafka:
            from streams.kafka.evidence import export_from_kafka

            data = export_from_kafka(Settings(**({"broker": broker} if broker else {})), alert_id)
        else:
            data = export(PlatformLogs.open(evidence_dir), alert_id)
    except (FileNotFoundError, TimeoutError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    except NotFound as err:
        raise click.ClickException(f"no evidence for alert {alert_id} in {where}") from err
    out.write_bytes(data)
    click.echo(f"wrote {out} ({len(data):,} bytes)", err=True)


@evidence.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", metavar="KEY", default=None,
              help="The log's Ed25519 public key (base64, or a file holding it), obtained apart from the bundle. "
              "Without it the key inside the bundle is used, which proves integrity, not origin.")
def evidence_verify(file: Path, public_key: str | None) -> None:
    """Check every hash, inclusion proof, consistency proof and signature of a bundle, offline.

    Exits 0 only when all of them hold; otherwise prints each failure, naming the entry and
    the hash, proof or signature, and exits 1.
    """
    from evidence.bundle import verify

    if public_key and Path(public_key).is_file():
        public_key = Path(public_key).read_text().strip()
    failures, facts = verify(file.read_bytes(), public_key)
    if failures:
        for failure in failures:
            click.echo(f"FAIL {failure}")
        click.echo(f"{file}: {len(failures)} check(s) failed", err=True)
        sys.exit(1)
    click.echo(f"OK {file}: alert {facts['alert_id']}, {facts['versions']} version(s), {facts['entries']} entries; "
               f"every hash, inclusion proof, consistency proof and signature holds (tree size {facts['tree_size']}, "
               f"root {facts['root_hash']}, {facts['timestamp']})"
               + ("" if public_key else "; signed by the key inside the bundle (give --public-key to check origin)"))


if __name__ == "__main__":  # pragma: no cover
    main()
