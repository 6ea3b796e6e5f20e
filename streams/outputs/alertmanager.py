"""Prometheus Alertmanager as a target, for teams that route alerts there.

Each alert version is posted to ``POST /api/v2/alerts`` at once, and every active alert is
re-sent every ``resend_s`` with ``endsAt`` three intervals ahead: Alertmanager keeps an alert
firing while it is re-sent and resolves it on its own once Stormwatch stops sending it. An
alert is active for ``active_s`` (wall clock) after its latest version.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from pydantic import BaseModel, Field

from events.models import format_ts

log = logging.getLogger("stormwatch.alertmanager")


class AlertmanagerSettings(BaseModel):
    url: str | None = Field(None, description="Alertmanager base URL, e.g. http://127.0.0.1:9093 (off when empty).")
    resend_s: float = Field(60.0, description="Re-send active alerts this often.")
    active_s: float = Field(86400.0, description="An alert stays active this long after its latest version.")


def to_alertmanager(alert: dict, ends: float) -> dict:
    """One Stormwatch alert as Alertmanager's v2 API wants it."""
    return {
        "labels": {"alertname": alert["kind"], "kind": alert["kind"], "severity": alert["severity"],
                   "platform": alert["platform"], "subject_type": alert["subject"]["type"],
                   "subject": alert["subject"]["id"], "source": "stormwatch"},
        "annotations": {"summary": alert["summary"], "legal_refs": "; ".join(alert.get("legal_refs", [])),
                        "alert_id": alert["alert_id"], "version": str(alert["version"]),
                        "aggravating": ", ".join(alert.get("aggravating", []))},
        "startsAt": alert["first_ts"],
        "endsAt": format_ts(ends),
    }


class Alertmanager:
    def __init__(self, settings: AlertmanagerSettings) -> None:
        if not settings.url:
            raise ValueError("Alertmanager needs STORMWATCH_ALERTMANAGER__URL")
        self.settings = settings
        self.active: dict[str, tuple[float, dict]] = {}  # alert_id -> (wall time seen, latest version)
        self.pending: asyncio.Queue[dict] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def submit(self, alert: dict) -> None:
        if alert.get("shadow"):
            return
        self.active[alert["alert_id"]] = (time.time(), alert)
        self.pending.put_nowait(alert)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="alertmanager")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        url = self.settings.url.rstrip("/") + "/api/v2/alerts"
        async with httpx.AsyncClient(timeout=10) as client:
            next_resend = time.monotonic()
            while True:
                batch: list[dict] = []
                try:
                    timeout = max(next_resend - time.monotonic(), 0)
                    batch.append(await asyncio.wait_for(self.pending.get(), timeout))
                    while not self.pending.empty():
                        batch.append(self.pending.get_nowait())
                except asyncio.TimeoutError:
                    now = time.time()
                    self.active = {k: v for k, v in self.active.items() if now - v[0] < self.settings.active_s}
                    batch = [alert for _seen, alert in self.active.values()]
                    next_resend = time.monotonic() + self.settings.resend_s
                if not batch:
                    continue
                ends = time.time() + 3 * self.settings.resend_s
                try:
                    response = await client.post(url, json=[to_alertmanager(a, ends) for a in batch])
                    response.raise_for_status()
                except httpx.HTTPError as err:  # re-sent on the next round anyway
                    log.warning("alertmanager at %s: %s", url, err)
