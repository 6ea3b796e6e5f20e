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


if __name__ == "__main__":  # pragma: no cover
    main()
