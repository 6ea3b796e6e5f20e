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
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from events.alerts import REGULATOR
from streams import metrics


class EndpointConfig(BaseModel):
    """One receiver. Empty filters mean everything."""

    url: str
    secret: str | None = Field(None, description="whsec_<base64>; the default secret when empty.")
    kinds: list[str] = []
    severities: list[str] = []
    platforms: list[str] = []

    def wants(self, alert: dict) -> bool:
        """A platform's endpoint (one with a platform filter) never gets a regulator-only alert."""
        if self.platforms and alert.get("audience") == REGULATOR:
            return False
        return ((not self.kinds or alert["kind"] in self.kinds)
                and (not self.severities or alert["severity"] in self.severities)
                and (not self.platforms or alert["platform"] in self.platforms))


class DeliverySettings(BaseModel):
    timeout_s: float = Field(10.0, description="Per request.")
    backoff_s: float = Field(0.5, description="First retry delay; doubles each attempt (full jitter).")
    max_backoff_s: float = Field(60.0, description="Longest wait between attempts.")
    give_up_s: float = Field(3600.0, description="Give up on a version this long after it was queued.")
    retention_s: float = Field(86400.0, gt=0, description="Keep a delivered or given-up version's record (without "
                               "its body) this long: the same version submitted again within it is not sent again.")
    endpoints_file: Path | None = Field(None, description="JSON list of endpoints with filters and secrets.")


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def endpoints_from(urls: str, secret: str | None, settings: DeliverySettings) -> list[EndpointConfig]:
    """``STORMWATCH_WEBHOOK_URLS`` (every alert) plus the endpoints file (with filters)."""
    endpoints = [EndpointConfig(url=u.strip(), secret=secret) for u in urls.split(",") if u.strip()]
    if settings.endpoints_file is not None:
        for raw in json.loads(settings.endpoints_file.read_text()):
            endpoint = EndpointConfig.model_validate(raw)
            endpoints.append(endpoint if endpoint.secret else endpoint.model_copy(update={"secret": secret}))
    return endpoints


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
        return self.db.execute("select count(*) from outbox where state = ?", (state,)).fetchone()[0]

    def size(self) -> int:
        """Every row, queued or kept for de-duplication."""
        return self.db.execute("select count(*) from outbox").fetchone()[0]


class Delivery:
    """Queues alert versions for every endpoint that wants them and sends them in the background."""

    PRUNE_EVERY = 1000  # finished rows between prunes, so that one prune deletes about that many

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
        self.client = httpx.AsyncClient(timeout=self.settings.timeout_s)
        self.prune()  # what expired while the worker was down
        self.tasks = [asyncio.create_task(self._run(e), name=f"webhook {e.url}") for e in self.endpoints]

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
        wakeup = self.wakeups[endpoint.url]
        while True:
            row = self.outbox.next(endpoint.url)
            if row is None:
                wakeup.clear()
                await wakeup.wait()
                continue
            alert_id, version, body, queued, attempts, next_try = row
            wait = next_try - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            error = await self._send(endpoint, alert_id, version, body)
            if error is None:
                self.outbox.mark(endpoint.url, alert_id, version, "delivered")
                metrics.WEBHOOKS.labels("delivered").inc()
                self._finished()
            elif time.time() - queued >= self.settings.give_up_s:
                self.outbox.mark(endpoint.url, alert_id, version, "given_up", error)
                metrics.WEBHOOKS.labels("given_up").inc()
                self.on_give_up({"error": f"webhook {endpoint.url} gave up on {alert_id}:{version}: {error}",
                                 "raw": body.decode(), "source": f"webhook:{endpoint.url}", "reason": "webhook_given_up",
                                 "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
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
        try:
            response = await self.client.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            metrics.WEBHOOKS.labels("failed").inc()
            return f"{type(err).__name__}: {err}" or type(err).__name__
        if 200 <= response.status_code < 300:
            return None
        metrics.WEBHOOKS.labels("failed").inc()
        return f"HTTP {response.status_code}"
