"""Webhook delivery: signed, retried, de-duplicated, and never in the detectors' way.

Each alert version is written to an **outbox** (SQLite) once per endpoint that wants it; the
primary key ``(endpoint, alert_id, version)`` means a version is queued, and so delivered to
a healthy receiver, at most once, also after a restart (the worker keeps the outbox in its
data folder). One task per endpoint sends that endpoint's rows in order: a receiver that is
down or slow delays only itself, and ``submit`` never waits for the network.

Requests follow Standard Webhooks: ``webhook-id`` = ``<alert_id>:<version>``,
``webhook-timestamp`` (Unix seconds), ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`` with the secret's decoded bytes. A 2xx answer is delivery;
anything else or no answer is retried with exponential backoff and full jitter, and given up
after ``give_up_s`` into the dead-letter output with the last error.

The outbox stays small. A delivered or given-up row loses its body at once and is deleted
``retention_s`` after it finished (default one day); the delivery tasks prune after every
thousand finished rows or a minute, whichever comes first, not on every send. The row itself is the de-duplication record, so a version that
comes again within the retention (a Kafka re-read after a restart) is still ignored; one that
comes again later is delivered again. We keep the bodiless row rather than a separate
tombstone table: the primary key already does the de-duplication, and one table has no
queue-to-history move to get wrong. A partial index over queued rows only makes finding an
endpoint's next row independent of the history kept.

Receivers are not trusted. One attempt, from connecting to the last byte read, ends at
``attempt_deadline_s`` (httpx's timeout bounds each read, so a byte every second would
otherwise hold the endpoint for ever); at most ``max_response_bytes`` of an answer are read.
The status line is the receiver's verdict: once it has come, a body cut short by the deadline
or the cap does not turn a 2xx into a retry (which would send the version again).
Endpoints are validated when configured, and an endpoint's task logs an unexpected error and
goes on. Credentials in an endpoint's URL never leave the request: user and password go as
basic auth, and dead letters, errors, logs and task names show :func:`public_url`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, ValidationError, field_validator

from events.alerts import REGULATOR
from events.decode import DeadLetter
from streams import metrics

if TYPE_CHECKING:
    from streams.settings import Settings

log = logging.getLogger("stormwatch.delivery")


def public_url(url: str) -> str:
    """``url`` as Stormwatch shows it: no ``user:password@``, the query's values as ``***``
    (receivers put tokens there), no fragment. The path stays: it tells endpoints apart."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    query = "&".join(f"{item.partition('=')[0]}=***" for item in parts.query.split("&") if item)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}" + (f"?{query}" if query else "")


class EndpointConfig(BaseModel):
    """One receiver. Empty filters mean everything."""

    url: str
    secret: str | None = Field(None, description="whsec_<base64>; the default secret when empty.")
    kinds: list[str] = []
    severities: list[str] = []
    platforms: list[str] = []

    # Messages name the problem, never the value: it may hold credentials.
    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError("not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        if not parsed.host:
            raise ValueError("has no host")
        return url

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, secret: str | None) -> str | None:
        if not secret:
            return None
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            key = b""
        if not secret.startswith("whsec_") or not key:
            raise ValueError("must be whsec_ followed by base64")
        return secret

    @cached_property
    def public(self) -> str:
        """The URL for dead letters, errors, logs and task names."""
        return public_url(self.url)

    @cached_property
    def target(self) -> httpx.URL:
        """The URL requests go to: without its user and password, which go as :attr:`auth`."""
        return httpx.URL(self.url).copy_with(username=None, password=None)

    @cached_property
    def auth(self) -> tuple[str, str] | None:
        url = httpx.URL(self.url)
        return (url.username, url.password) if url.username or url.password else None

    def scrub(self, text: str) -> str:
        """``text`` with this endpoint's URL, as given or as requested, shown as :attr:`public`."""
        return text.replace(self.url, self.public).replace(str(self.target), self.public)

    def wants(self, alert: dict) -> bool:
        """A platform's endpoint (one with a platform filter) never gets a regulator-only alert."""
        if self.platforms and alert.get("audience") == REGULATOR:
            return False
        return ((not self.kinds or alert["kind"] in self.kinds)
                and (not self.severities or alert["severity"] in self.severities)
                and (not self.platforms or alert["platform"] in self.platforms))


class DeliverySettings(BaseModel):
    timeout_s: float = Field(10.0, description="httpx's timeout: connecting, and each read and write.")
    attempt_deadline_s: float | None = Field(None, gt=0, description="Longest one attempt may take, from connecting "
                                             "to the last byte read; empty = timeout_s.")
    max_response_bytes: int = Field(65536, ge=0, description="Most bytes of an answer read; then the connection "
                                    "is closed.")
    backoff_s: float = Field(0.5, description="First retry delay; doubles each attempt (full jitter).")
    max_backoff_s: float = Field(60.0, description="Longest wait between attempts.")
    give_up_s: float = Field(3600.0, description="Give up on a version this long after it was queued.")
    retention_s: float = Field(86400.0, gt=0, description="Keep a delivered or given-up version's record (without "
                               "its body) this long: the same version submitted again within it is not sent again.")
    endpoints_file: Path | None = Field(None, description="JSON list of endpoints with filters and secrets.")

    @property
    def deadline_s(self) -> float:
        return self.attempt_deadline_s or self.timeout_s


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def endpoints_from(urls: str, secret: str | None, settings: DeliverySettings) -> list[EndpointConfig]:
    """``STORMWATCH_WEBHOOK_URLS`` (every alert) plus the endpoints file (with filters).

    Raises ValueError naming the endpoint (by :func:`public_url`) and the field, so a bad
    endpoint stops the command at start instead of its delivery task later."""
    configs = [("STORMWATCH_WEBHOOK_URLS", {"url": u.strip()}) for u in urls.split(",") if u.strip()]
    if settings.endpoints_file is not None:
        try:
            listed = json.loads(settings.endpoints_file.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"webhook endpoints file {settings.endpoints_file}: {err}") from None
        if not isinstance(listed, list) or not all(isinstance(raw, dict) for raw in listed):
            raise ValueError(f"webhook endpoints file {settings.endpoints_file}: not a JSON list of objects")
        configs += [(str(settings.endpoints_file), raw) for raw in listed]
    endpoints = []
    for number, (where, raw) in enumerate(configs, 1):
        try:
            endpoints.append(EndpointConfig.model_validate({**raw, "secret": raw.get("secret") or secret}))
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                                 for e in err.errors())
            raise ValueError(f"webhook endpoint {number} ({where}, {public_url(str(raw.get('url')))}): "
                             f"{problems}") from None
    return endpoints


class _PublicURLs(logging.Filter):
    """httpx logs every request's URL at INFO; show it as :func:`public_url`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(public_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


_PUBLIC_URLS = _PublicURLs()


@dataclass
class Outbox:
    """Durable queue of (endpoint, alert version) rows and what became of them.

    ``done`` is when a row was delivered or given up (NULL while queued); ``prune`` deletes
    finished rows by it. Outboxes written before ``done`` existed get the column on opening.
    """

    path: str = ":memory:"
    db: sqlite3.Connection = field(init=False)

    # Each endpoint's next row. The partial index ``outbox_queued`` holds queued rows only, in
    # rowid order, so this never reads the history kept for de-duplication (see
    # test_finding_the_next_row_uses_the_queue_index_not_the_history).
    NEXT = ("select alert_id, version, body, queued, attempts, next_try from outbox "
            "where endpoint = ? and state = 'queued' order by rowid limit 1")

    def __post_init__(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("""create table if not exists outbox (
            endpoint text, alert_id text, version integer, body blob, queued real, attempts integer default 0,
            next_try real default 0, state text default 'queued', last_error text, done real,
            primary key (endpoint, alert_id, version))""")
        if "done" not in {row[1] for row in self.db.execute("pragma table_info(outbox)")}:
            self.db.execute("begin")  # an outbox from before retention: finished rows count from when queued
            self.db.execute("alter table outbox add column done real")
            self.db.execute("update outbox set done = queued, body = null where state != 'queued'")
            self.db.execute("commit")
        self.db.execute("create index if not exists outbox_queued on outbox (endpoint) where state = 'queued'")
        self.db.execute("create index if not exists outbox_done on outbox (done) where done is not null")

    def add(self, endpoint: str, alert_id: str, version: int, body: bytes) -> bool:
        cur = self.db.execute("insert or ignore into outbox (endpoint, alert_id, version, body, queued) "
                              "values (?, ?, ?, ?, ?)", (endpoint, alert_id, version, body, time.time()))
        return cur.rowcount == 1

    def next(self, endpoint: str) -> tuple | None:
        return self.db.execute(self.NEXT, (endpoint,)).fetchone()

    def mark(self, endpoint: str, alert_id: str, version: int, state: str, error: str | None = None,
             next_try: float = 0.0) -> None:
        """Record an attempt; a finished row (not ``queued``) drops its body and gets its ``done`` time."""
        if state == "queued":
            self.db.execute("update outbox set state = ?, last_error = ?, attempts = attempts + 1, next_try = ? "
                            "where endpoint = ? and alert_id = ? and version = ?",
                            (state, error, next_try, endpoint, alert_id, version))
        else:
            self.db.execute("update outbox set state = ?, last_error = ?, attempts = attempts + 1, next_try = ?, "
                            "body = null, done = ? where endpoint = ? and alert_id = ? and version = ?",
                            (state, error, next_try, time.time(), endpoint, alert_id, version))

    def prune(self, before: float) -> int:
        """Delete the rows finished before ``before`` (Unix time); queued rows stay. Returns how many."""
        return self.db.execute("delete from outbox where done < ?", (before,)).rowcount

    def pending(self) -> int:
        return self.db.execute("select count(*) from outbox where state = 'queued'").fetchone()[0]

    def count(self, state: str) -> int:
        """Rows in one state (operators and the retention test read it)."""
        return self.db.execute("select count(*) from outbox where state = ?", (state,)).fetchone()[0]

    def size(self) -> int:
        """Every row, queued or kept for de-duplication."""
        return self.db.execute("select count(*) from outbox").fetchone()[0]


class Delivery:
    """Queues alert versions for every endpoint that wants them and sends them in the background."""

    PRUNE_EVERY = 1000  # finished rows between prunes, so that one prune deletes about that many
    ERROR_PAUSE_S = 1.0  # after an unexpected error in an endpoint's task, before it goes on

    def __init__(self, endpoints: list[EndpointConfig], settings: DeliverySettings, outbox: Outbox,
                 on_give_up: Callable[[dict], None]) -> None:
        self.endpoints = endpoints
        self.settings = settings
        self.outbox = outbox
        self.on_give_up = on_give_up
        self.wakeups = {e.url: asyncio.Event() for e in endpoints}
        self.tasks: list[asyncio.Task] = []
        self.client: httpx.AsyncClient | None = None
        # Prune at least once a minute (sooner with a short retention, as in the tests).
        self.prune_interval_s = min(60.0, settings.retention_s / 2)
        self.next_prune = 0.0
        self.finished_since_prune = 0

    def submit(self, alert: dict) -> None:
        """Queue one alert version; returns at once. Shadow alerts are recorded, not delivered."""
        if alert.get("shadow"):
            return
        body = json.dumps(alert, ensure_ascii=False, separators=(",", ":")).encode()
        for endpoint in self.endpoints:
            if endpoint.wants(alert) and self.outbox.add(endpoint.url, alert["alert_id"], alert["version"], body):
                self.wakeups[endpoint.url].set()

    def start(self) -> None:
        logging.getLogger("httpx").addFilter(_PUBLIC_URLS)  # once: addFilter ignores a filter it has
        self.client = httpx.AsyncClient(timeout=self.settings.timeout_s)
        self.prune()  # what expired while the worker was down
        self.tasks = [asyncio.create_task(self._run(e), name=f"webhook {e.public}") for e in self.endpoints]

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued (delivered or given up); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outbox.pending():
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def prune(self) -> None:
        """Delete the finished rows older than the retention; called by the delivery tasks."""
        now = time.time()
        self.outbox.prune(now - self.settings.retention_s)
        self.next_prune = now + self.prune_interval_s
        self.finished_since_prune = 0

    def _finished(self) -> None:
        self.finished_since_prune += 1
        if self.finished_since_prune >= self.PRUNE_EVERY or time.time() >= self.next_prune:
            self.prune()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def _run(self, endpoint: EndpointConfig) -> None:
        """Send the endpoint's rows for as long as delivery runs: an unexpected error is logged
        and the task goes on (a dead task would leave the endpoint's versions queued for ever)."""
        while True:
            try:
                await self._next(endpoint)
            except Exception as err:  # not CancelledError: stop() ends the task
                log.error("webhook %s: unexpected error, going on in %g s: %s", endpoint.public,
                          self.ERROR_PAUSE_S, endpoint.scrub(f"{type(err).__name__}: {err}"))
                log.debug("webhook %s: the unexpected error", endpoint.public, exc_info=True)
                await asyncio.sleep(self.ERROR_PAUSE_S)

    async def _next(self, endpoint: EndpointConfig) -> None:
        """Wait for the endpoint's next row and make one attempt at it."""
        row = self.outbox.next(endpoint.url)
        if row is None:
            wakeup = self.wakeups[endpoint.url]
            wakeup.clear()
            await wakeup.wait()
            return
        alert_id, version, body, queued, attempts, next_try = row
        wait = next_try - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            error = await self._send(endpoint, alert_id, version, body)
        except Exception as err:  # a failed attempt like any other: retried, then given up
            error = endpoint.scrub(f"unexpected {type(err).__name__}: {err}")
            log.error("webhook %s: %s", endpoint.public, error)
            log.debug("webhook %s: the unexpected error", endpoint.public, exc_info=True)
        if error is None:
            self.outbox.mark(endpoint.url, alert_id, version, "delivered")
            metrics.WEBHOOKS.labels("delivered").inc()
            self._finished()
        elif time.time() - queued >= self.settings.give_up_s:
            self.outbox.mark(endpoint.url, alert_id, version, "given_up", error)
            metrics.WEBHOOKS.labels("given_up").inc()
            self.on_give_up(DeadLetter(f"webhook {endpoint.public} gave up on {alert_id}:{version}: {error}",
                                       "webhook_given_up", body.decode(), f"webhook:{endpoint.public}").to_record())
            self._finished()
        else:
            backoff = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** attempts)
            self.outbox.mark(endpoint.url, alert_id, version, "queued", error,
                             time.time() + random.uniform(0, backoff))
            metrics.WEBHOOKS.labels("retried").inc()

    async def _send(self, endpoint: EndpointConfig, alert_id: str, version: int, body: bytes) -> str | None:
        """None when the receiver took it (2xx); otherwise what went wrong."""
        msg_id = f"{alert_id}:{version}"
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
        if endpoint.secret:
            headers["webhook-signature"] = sign(endpoint.secret, msg_id, timestamp, body)
        status = None  # the receiver's verdict; its body is read only so that the connection can be reused
        try:
            async with asyncio.timeout(self.settings.deadline_s):
                async with self.client.stream("POST", endpoint.target, content=body, headers=headers,
                                              auth=endpoint.auth) as response:
                    status = response.status_code
                    await self._read_capped(response)
        except TimeoutError:
            if status is None:
                metrics.WEBHOOKS.labels("failed").inc()
                return f"no answer within the attempt deadline ({self.settings.deadline_s:g} s)"
        except httpx.HTTPError as err:
            if status is None:
                metrics.WEBHOOKS.labels("failed").inc()
                return endpoint.scrub(f"{type(err).__name__}: {err}")
        if 200 <= status < 300:
            return None
        metrics.WEBHOOKS.labels("failed").inc()
        return f"HTTP {status}"

    async def _read_capped(self, response: httpx.Response) -> None:
        """Read at most ``max_response_bytes`` of the answer. A short answer is read to its end, so
        the connection can be used again; after the cap, leaving ``stream()`` closes it."""
        read = 0
        async with aclosing(response.aiter_raw()) as chunks:
            async for chunk in chunks:
                read += len(chunk)
                if read >= self.settings.max_response_bytes:
                    return


def make_delivery(settings: Settings, on_give_up: Callable[[dict], None], outbox_path: str = ":memory:"):
    """The webhook delivery stage for the configured endpoints, or None when there are none.

    A bad endpoint stops the command here, with a one-line error naming it and the field."""
    import click

    try:
        endpoints = endpoints_from(settings.webhook_urls, settings.webhook_secret, settings.delivery)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if not endpoints:
        return None
    return Delivery(endpoints, settings.delivery, Outbox(outbox_path), on_give_up)
