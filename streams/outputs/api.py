"""The HTTP API's logic, apart from any web framework: who is asking, and what they may see.

``demo`` (aiohttp) and the worker (Faust's web server) both call :func:`handle`. Every
``/api`` request needs ``Authorization: Bearer <token>``; tokens and roles come from
``STORMWATCH_API_TOKENS``. A regulator sees every platform; a platform's team sees only its
own platform, and asking for another one is 403, never the data.

Both servers are aiohttp (Faust's web driver is aiohttp too), so the hardening they share is
here as well: :func:`security_headers` (applied by :func:`secure_headers`, a middleware) and
:func:`server_options` (a time limit for slow clients).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from detectors.order_view import describe, orders_of, scorecard
from detectors.orders import ledger_state
from events.alerts import REGULATOR
from streams import metrics

log = logging.getLogger("stormwatch.api")

DASHBOARD = Path(__file__).with_name("dashboard.html")  # the regulator's page, served by demo and worker


@dataclass(frozen=True)
class Caller:
    role: str
    platform: str | None = None

    def may_see(self, platform: str | None) -> bool:
        return self.role == "regulator" or (platform is not None and platform == self.platform)


def authenticate(tokens: Mapping[str, Mapping[str, str]], authorization: str | None) -> Caller | None:
    if not authorization or not authorization.startswith("Bearer "):
        return None
    grant = tokens.get(authorization.removeprefix("Bearer ").strip())
    if not grant:
        return None
    if grant.get("role") == "regulator":
        return Caller("regulator")
    if grant.get("role") == "platform" and grant.get("platform"):
        return Caller("platform", grant["platform"])
    return None


@dataclass
class Sources:
    """Where the API reads from: the latest alert versions, the ledger state, and event time now
    (``now(platform)``: each platform's own, see events.watermark.Watermark). ``versions``:
    earlier versions of each alert, oldest first, where the server keeps them (the demo does;
    the worker's view keeps the latest only)."""

    alerts: Mapping[str, dict]
    ledger: MutableMapping[str, Any]
    now: Callable[[str], float]
    versions: Mapping[str, list[dict]] | None = None


def may_read(alert: dict, caller: Caller, wanted: str | None) -> bool:
    """Whether this caller may read this alert. A finding that spans platforms in full
    (``audience: regulator``) is the regulator's alone; each platform has its own part as its
    own alert."""
    return (caller.may_see(alert["platform"]) and (wanted is None or alert["platform"] == wanted)
            and (caller.role == "regulator" or alert.get("audience") != REGULATOR))


def visible(alerts, caller: Caller, wanted: str | None) -> list[dict]:
    """The alerts this caller may read."""
    return [a for a in alerts if may_read(a, caller, wanted)]


def _since(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _each(endpoint: str, records: Iterable[Any], build: Callable[[Any], Any]) -> list:
    """``build`` applied record by record. A record that cannot be shown (a hostile id, a time
    outside any calendar, a missing field) is left out and counted in
    ``stormwatch_api_records_skipped_total``, so one record never turns a whole answer into a 500.
    ``build`` returns None for a record the request does not want."""
    out = []
    for record in records:
        try:
            row = build(record)
        except Exception:  # noqa: BLE001 - whatever is wrong with one record, the others are served
            log.debug("%s: a record could not be shown", endpoint, exc_info=True)
            skipped(endpoint)
            continue
        if row is not None:
            out.append(row)
    return out


def skipped(endpoint: str) -> None:
    metrics.API_SKIPPED.labels(endpoint).inc()


def handle(path: str, query: Mapping[str, str], authorization: str | None,
           tokens: Mapping[str, Mapping[str, str]], sources: Sources) -> tuple[int, Any]:
    """(status, JSON body) for one GET request under /api."""
    caller = authenticate(tokens, authorization)
    if caller is None:
        return 401, {"error": "missing or unknown bearer token"}
    wanted = query.get("platform") or None
    if wanted is not None and not caller.may_see(wanted):
        return 403, {"error": f"this token may not read platform {wanted!r}"}

    def shown(a: dict) -> bool:
        return may_read(a, caller, wanted)

    parts = [p for p in path.split("/") if p]
    if parts == ["api", "alerts"]:
        try:
            since = _since(query.get("since"))
        except ValueError:
            return 400, {"error": "since: not an RFC 3339 timestamp"}

        def alert(a: dict) -> tuple | None:
            ts = datetime.fromisoformat(a["ts"]).timestamp()
            if (shown(a) and (not query.get("kind") or a["kind"] == query["kind"])
                    and (not query.get("subject") or a["subject"]["id"] == query["subject"])
                    and (since is None or ts >= since)):
                return (ts, str(a["alert_id"])), a
            return None

        rows = _each("alerts", list(sources.alerts.values()), alert)
        return 200, [a for _key, a in sorted(rows, key=lambda row: row[0], reverse=True)]
    if len(parts) == 4 and parts[:2] == ["api", "alerts"] and parts[3] == "versions":
        latest = sources.alerts.get(parts[2])
        if latest is None:
            return 404, {"error": f"no alert {parts[2]!r} here"}
        if not shown(latest):
            return 403, {"error": "this token may not read this alert"}
        kept = (sources.versions or {}).get(parts[2]) or [latest]
        return 200, [v for v in kept if v["version"] <= latest["version"]]
    if parts == ["api", "campaigns"]:
        def campaign(a: dict) -> tuple | None:
            if shown(a) and a["kind"] == "water_army_campaign" and "merged_into" not in a["evidence"]:
                return (-len(a["evidence"]["accounts"]), str(a["alert_id"])), a
            return None

        rows = _each("campaigns", list(sources.alerts.values()), campaign)
        return 200, [a for _key, a in sorted(rows, key=lambda row: row[0])]
    if parts == ["api", "cascades"]:
        cascades: dict[tuple[str, str], dict] = {}

        def cascade(a: dict) -> None:
            if not (shown(a) and a["subject"]["type"] == "post" and a["kind"] in ("viral_spread", "legal_threshold")):
                return
            key, alert_id = (str(a["platform"]), str(a["subject"]["id"])), a["alert_id"]
            figure = a["evidence"]["threshold"] if a["kind"] == "legal_threshold" else None
            views, reposts = a["evidence"].get("views", 0), a["evidence"].get("reposts", 0)
            views, reposts = max(views, 0), max(reposts, 0)  # numbers, or this record is skipped
            row = cascades.setdefault(key, {"post_id": key[1], "platform": key[0], "figures_crossed": [], "alerts": []})
            row["alerts"].append(alert_id)
            if figure is not None:
                row["figures_crossed"].append(figure)
            row["views"] = max(row.get("views", 0), views)
            row["reposts"] = max(row.get("reposts", 0), reposts)

        _each("cascades", list(sources.alerts.values()), cascade)
        return 200, sorted(cascades.values(), key=lambda r: (-r["reposts"], r["post_id"]))
    if parts == ["api", "orders"]:
        times: dict[str, float] = {}

        def order(row: tuple[str, str, dict]) -> dict | None:
            platform, order_id, record = row
            if record["order"] is None or not caller.may_see(platform):
                return None
            now = times.get(platform)
            if now is None:
                now = times[platform] = sources.now(platform)
            if query.get("state") and ledger_state(record, now) != query["state"]:
                return None
            return describe(order_id, record, now)

        return 200, _each("orders", orders_of(sources.ledger, wanted, lambda: skipped("orders")), order)
    if len(parts) == 4 and parts[:2] == ["api", "platforms"] and parts[3] == "scorecard":
        if not caller.may_see(parts[2]):
            return 403, {"error": f"this token may not read platform {parts[2]!r}"}
        return 200, scorecard(sources.ledger, parts[2], sources.now(parts[2]), lambda: skipped("scorecard"))
    return 404, {"error": "no such endpoint"}


def evidence_bundle(alert_id: str, authorization: str | None, tokens: Mapping[str, Mapping[str, str]],
                    alerts: Mapping[str, dict], export: Callable[[str], bytes] | None) -> tuple[int, bytes | dict]:
    """``GET /api/alerts/{id}/evidence``: the alert's evidence bundle (ZIP bytes) for the regulator,
    or for a platform token when the alert is that platform's own (never a regulator-only one)."""
    caller = authenticate(tokens, authorization)
    if caller is None:
        return 401, {"error": "missing or unknown bearer token"}
    alert = alerts.get(alert_id)
    if alert is None or export is None:
        return 404, {"error": f"no alert {alert_id!r} with evidence here"}
    if not visible([alert], caller, None):
        return 403, {"error": "this token may not read this alert's evidence"}
    try:
        return 200, export(alert_id)
    except KeyError:
        return 404, {"error": f"no evidence recorded for alert {alert_id!r}"}


def _get(summary: str, params: list[dict] | None = None) -> dict:
    return {"get": {"summary": summary, "security": [{"bearer": []}], "parameters": params or [],
                    "responses": {"200": {"description": "JSON"}, "401": {"description": "missing or unknown token"},
                                  "403": {"description": "a platform token asking for another platform"}}}}


def _q(name: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": description}


PLATFORM = _q("platform", "only this platform (a platform token may name only its own)")
OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "Stormwatch API", "version": "1", "description":
             "Alerts, campaigns, cascades, regulator orders and platform scorecards. Bearer tokens come from "
             "STORMWATCH_API_TOKENS: a regulator sees every platform, a platform's team only its own."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/alerts": _get("Latest version of each alert, newest first", [
            _q("kind", "alert kind"), PLATFORM, _q("subject", "subject id"), _q("since", "RFC 3339 event time")]),
        "/api/alerts/{alert_id}/evidence": _get("The alert's evidence bundle (application/zip): manifest.json "
                                                "with raw events, hashes, inclusion proofs and signed tree heads; "
                                                "summary.md", [{"name": "alert_id", "in": "path", "required": True,
                                                                "schema": {"type": "string"}}]),
        "/api/alerts/{alert_id}/versions": _get("The alert's versions, oldest first, as far as this server keeps "
                                                "them (the demo: all; the worker: the latest)", [
                                                    {"name": "alert_id", "in": "path", "required": True,
                                                     "schema": {"type": "string"}}]),
        "/api/campaigns": _get("Live water-army campaigns, largest first", [PLATFORM]),
        "/api/cascades": _get("Posts that spread fast or crossed a legal figure", [PLATFORM]),
        "/api/orders": _get("Orders with their ledger state, measures done and missing, deadline",
                            [PLATFORM, _q("state", "issued, acknowledged, in_progress, completed, overdue, refused, "
                                                    "disputed, extension_requested")]),
        "/api/platforms/{platform}/scorecard": _get("Orders received, completed on time, median times to "
                                                    "acknowledge and comply, refusals within two years, open past "
                                                    "deadline", [{"name": "platform", "in": "path", "required": True,
                                                                  "schema": {"type": "string"}}]),
    },
}


# -- The dashboard's files, served by demo and the worker --------------------------------------

STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".txt": "text/plain; charset=utf-8"}


def static_file(name: str) -> tuple[bytes, str] | None:
    """(bytes, Content-Type) of ``/static/<name>``: a file directly in ``streams/outputs/static`` (the
    vendored chart library and its licences), or None. No path is built from the request: the
    name must be one of the folder's own file names."""
    for path in STATIC.iterdir():
        if path.name == name and path.suffix in STATIC_TYPES and path.is_file():
            return path.read_bytes(), STATIC_TYPES[path.suffix]
    return None


# -- HTTP hardening shared by demo and the worker ---------------------------------------------

HTTP_TIMEOUT_S = 15.0
CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.S)


def security_headers(path: str, html: bytes | None = None) -> dict[str, str]:
    """The headers every response gets. ``html``: a page whose inline ``<script>`` and ``<style>``
    elements the CSP allows by their SHA-256 (the dashboard is one file, served as is by demo and
    the worker), so nothing injected into it runs. ``/api`` answers are never cached: they carry
    what a token may see."""
    headers = dict(SECURITY_HEADERS)
    if html is not None:
        allowed = {b"script": [], b"style": []}
        for tag, body in _INLINE.findall(html):
            allowed[tag].append(f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'")
        headers["Content-Security-Policy"] = (f"{CSP}; script-src 'self' {' '.join(allowed[b'script'])}; "
                                              f"style-src 'self' {' '.join(allowed[b'style'])}")
    if path == "/api" or path.startswith("/api/"):
        headers["Cache-Control"] = "no-store"
    return headers


@web.middleware
async def secure_headers(request: web.Request, handler: Callable) -> web.StreamResponse:
    """:func:`security_headers` on every response, errors (404, 405, ...) included."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(security_headers(request.path))
        raise
    html = response.body if isinstance(response, web.Response) and response.content_type == "text/html" else None
    response.headers.update(security_headers(request.path, html if isinstance(html, bytes) else None))
    return response


def server_options(timeout_s: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    """Keyword arguments for ``aiohttp.web.AppRunner``: a connection must complete a request's
    headers within ``timeout_s`` of opening (or of its previous response), or it is closed, so
    clients that send part of a request and go silent, or trickle it, cannot hold connections
    open. aiohttp's keep-alive timer does this: it starts when the connection opens and is not
    reset by incoming bytes, and closes a connection still waiting for a whole request."""
    return {"keepalive_timeout": timeout_s}
