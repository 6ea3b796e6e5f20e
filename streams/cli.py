"""The ``stormwatch`` command."""

from __future__ import annotations

import sys
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
    environment variables (see README).

    \b
    Start here:   stormwatch demo          (no broker needed)
    A file:       stormwatch replay events.jsonl --alerts-out alerts.jsonl
    On Kafka:     stormwatch worker   and   stormwatch produce events.jsonl
    """


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
def replay(file: Path, alerts_out: str, deadletter_out: str | None) -> None:
    """Run every detector over a JSON Lines FILE in process.

    Events of all types mixed, in event-time order; `tick` lines advance time. The same
    file gives byte-identical alert output on every run. Exits 0 unless FILE cannot be read.
    """
    from streams.local import LocalPipeline, read_lines, replay_lines

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

    pipeline = LocalPipeline(Settings(), on_alert, on_deadletter)
    replay_lines(pipeline, file, lines)
    for handle, close in ((alerts, close_alerts), (dead, close_dead)):
        handle.flush()
        if close:
            handle.close()
    click.echo(
        f"replayed {len(lines)} lines: {pipeline.events} events, {pipeline.deadletters} dead letters, "
        f"{pipeline.alerts} alert versions",
        err=True,
    )


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
    from streams.app import create_app, topic_names
    from streams.produce import ensure_topics

    overrides = {k: v for k, v in {"broker": broker, "web_port": web_port}.items() if v is not None}
    settings = Settings(**overrides)
    ensure_topics(settings, topic_names(settings))
    app = create_app(settings)
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
    from streams.produce import produce_file

    settings = Settings(**({"broker": broker} if broker else {}))
    report = produce_file(file, settings)
    click.echo(f"sent {report.sent} events, {report.ticks} ticks (to every partition), "
               f"{report.deadletters} unroutable lines to deadletter", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
