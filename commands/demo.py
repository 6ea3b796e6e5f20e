"""``stormwatch demo``: the whole system in one process, no broker.

A simulated platform hour (or a file) is fed through the same :class:`LocalPipeline` as
``replay``, paced in event time so alerts appear as they would live, while a web server on
127.0.0.1 serves metrics and health. It keeps serving after the feed ends, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
import orjson
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from events import Alert, DeadLetter
from streams.local import LocalPipeline, read_lines
from streams.outputs.delivery import make_delivery
from streams.outputs.alertmanager import Alertmanager
from streams.outputs.api import HTTP_TIMEOUT_S, Sources, secure_headers, server_options
from streams.outputs.routes import route_table
from streams.settings import Settings
from commands.simulator import SimConfig, simulate_lines
from evidence.bundle import export

VERSIONS_KEPT = 500  # versions of one alert the demo keeps for /api/alerts/{id}/versions
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}

# What must not reach the operator's terminal as is: C0 and C1 controls and DEL (escape
# sequences clear the screen, set the title, write hyperlinks), line separators, and the
# bidi embeddings, overrides, isolates and marks that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match) -> str:
    char = match[0]
    return _SHORT.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def printable(value: object) -> str:
    """``value`` as text with every control or bidi character shown as a visible escape
    (``\\x1b``, ``\\n``, ``\\u202e``): alert strings come from platforms and regulators, not from us."""
    return _UNPRINTABLE.sub(_visible, str(value))


def safe(value: object, style: str = "") -> Text:
    """Text for the console: a ``Text`` is never parsed as Rich markup, so ``[/oops]`` prints as is."""
    return Text(printable(value), style=style)


@dataclass
class DemoOptions:
    replay: Path | None = None
    port: int = 8686
    speed: float = 60.0  # event-time seconds per wall second; 0 = as fast as possible
    seed: int = 7
    minutes: int = 60
    exit_when_done: bool = False
    http_timeout_s: float | None = None  # a client gets this long to send a whole request (None: the setting)


def _feed(options: DemoOptions) -> tuple[list[tuple[str, bytes]], str]:
    if options.replay is not None:
        return [(f"{options.replay.name}:{n}", line) for n, line in read_lines(options.replay)], str(options.replay)
    start = (time.time() // 60) * 60 - options.minutes * 60  # the simulated hour ends now
    config = SimConfig(seed=options.seed, start=start, minutes=options.minutes)
    return [(f"simulator:{n}", line) for n, line in enumerate(simulate_lines(config), 1)], "simulator"


def _event_time(line: bytes) -> tuple[str, float] | None:
    """The line's ``ts`` as text and Unix seconds, for pacing and the progress display."""
    try:
        text = orjson.loads(line)["ts"]
        return text, datetime.fromisoformat(text).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _web_app(state: dict, settings: Settings | None = None, sources: Sources | None = None,
             export=None, tokens: dict[str, dict[str, str]] | None = None) -> web.Application:
    """The demo's web server. ``tokens``: the API's bearer tokens (default: the settings')."""
    tokens = tokens if tokens is not None else (settings.api_tokens if settings else {})
    app = web.Application(middlewares=[secure_headers])
    app.add_routes(route_table(tokens, sources, health=lambda: state, export=export))
    return app


async def serve(app: web.Application, host: str, port: int, timeout_s: float = HTTP_TIMEOUT_S) -> web.AppRunner:
    """Start serving ``app``; slow or silent clients are cut off after ``timeout_s``."""
    runner = web.AppRunner(app, **server_options(timeout_s))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    console = console or Console()
    settings = Settings()
    state = {"events": 0, "alerts": 0, "fed": False}
    latest: dict[str, dict] = {}
    versions: dict[str, list[dict]] = {}  # for the dashboard's curves: every version, the last VERSIONS_KEPT

    def on_alert(alert: Alert) -> None:
        state["alerts"] += 1
        if not getattr(alert, "shadow", False):
            latest[alert.alert_id] = alert.model_dump()
            kept = versions.setdefault(alert.alert_id, [])
            kept.append(latest[alert.alert_id])
            del kept[:-VERSIONS_KEPT]
        for output in outputs:
            output.submit(alert.model_dump())
        style = SEVERITY_STYLE.get(alert.severity, "white")
        console.print(Text.assemble(
            safe(f"{alert.severity.upper():8}", style), " ", safe(alert.ts), "  ", safe(alert.kind, "bold"),
            safe(f" v{alert.version} {alert.subject.type}={alert.subject.id}: {alert.summary}")), highlight=False)

    def on_deadletter(letter: DeadLetter) -> None:
        console.print(safe(f"dead letter {letter.source}: {letter.error}", "dim"), highlight=False)

    delivery = make_delivery(settings, lambda record: console.print(safe(record["error"], "red"), highlight=False))
    alertmanager = Alertmanager(settings.alertmanager) if settings.alertmanager.url else None
    outputs = [o for o in (delivery, alertmanager) if o is not None]
    for output in outputs:
        output.start()
    recorder = _evidence_recorder(settings, console)
    pipeline = LocalPipeline(settings, on_alert, on_deadletter, recorder)
    # Without the order ledger (STORMWATCH_DETECTORS without "orders") the API shows no orders.
    ledger = next((stage.state for stage in pipeline.engine.stages if stage.detector.name == "orders"), {})
    sources = Sources(alerts=latest, ledger=ledger, now=lambda platform: pipeline.engine.watermark().of(platform), versions=versions)
    tokens, one_time = demo_tokens(settings)
    runner = await serve(_web_app(state, settings, sources, export=lambda aid: export(recorder.logs, aid), tokens=tokens),
                         settings.web_host, options.port, options.http_timeout_s or settings.web_timeout_s)
    feed, name = _feed(options)
    console.print(safe(f"Stormwatch demo: feeding {len(feed):,} events from {name} at "
                       f"{'full speed' if not options.speed else f'{options.speed:g}x event time'}; "
                       f"metrics on http://{settings.web_host}:{options.port}/metrics"), highlight=False)
    console.print(dashboard_message(settings.web_host, options.port, one_time), highlight=False, soft_wrap=True)
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[clock]}", markup=False), TimeElapsedColumn(), console=console,
                        transient=False)
    try:
        with progress:
            task = progress.add_task("events", total=len(feed), clock="")
            wall0, event0 = time.monotonic(), None
            for n, (source, line) in enumerate(feed, 1):
                pipeline.feed(line, source, topic=name)
                state["events"] = n
                if n % 500 == 0 or n == len(feed):
                    when = _event_time(line)
                    progress.update(task, completed=n, clock=printable(when[0]) if when else "")
                    if options.speed and when is not None:
                        event0 = when[1] if event0 is None else event0
                        ahead = (when[1] - event0) / options.speed - (time.monotonic() - wall0)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                    else:
                        await asyncio.sleep(0)
        state["fed"] = True
        console.print(f"done: {pipeline.events:,} events, {pipeline.deadletters:,} dead letters, "
                      f"{pipeline.alerts:,} alert versions. Still serving; Ctrl-C stops.")
        if not options.exit_when_done:
            await asyncio.Event().wait()
    finally:
        for output in outputs:
            await output.stop()
        await runner.cleanup()
        recorder.logs.close()
    return 0


def demo_tokens(settings: Settings) -> tuple[dict[str, dict[str, str]], str | None]:
    """The API's tokens, and the one-time regulator token made when none is configured, so
    the dashboard opens without set-up (it lives as long as this process)."""
    if settings.api_tokens:
        return settings.api_tokens, None
    token = secrets.token_urlsafe(24)
    return {token: {"role": "regulator"}}, token


def dashboard_message(host: str, port: int, token: str | None) -> Text:
    """Where the dashboard is. The token goes in the URL's fragment, which browsers never send
    to the server (nor in a Referer); the page moves it to its session storage."""
    if token is None:
        return Text(f"Dashboard: http://{host}:{port}/dashboard (enter a token from STORMWATCH_API_TOKENS)")
    return Text.assemble("Dashboard (one-time regulator token, for this run only):\n    ",
                         (f"http://{host}:{port}/dashboard#token={token}", "bold"))


def _evidence_recorder(settings: Settings, console: Console):
    """The demo's evidence log: in STORMWATCH_EVIDENCE__DIR, or a new temporary folder."""
    import tempfile

    from evidence.recorder import new_recorder

    directory = settings.evidence.dir or Path(tempfile.mkdtemp(prefix="stormwatch-evidence-"))
    try:
        recorder, _generated = new_recorder(directory, settings.evidence_signing_key, settings.evidence)
    except (FileExistsError, ValueError) as err:  # a used folder, a bad signing key: say so, no traceback
        raise click.ClickException(f"STORMWATCH_EVIDENCE__DIR / STORMWATCH_EVIDENCE_SIGNING_KEY: {err}") from err
    console.print(f"Evidence log in {directory} (public key {recorder.logs.public_key}); bundles at "
                  "/api/alerts/<id>/evidence", highlight=False)
    return recorder
