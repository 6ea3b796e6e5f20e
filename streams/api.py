"""The HTTP API's logic, apart from any web framework: who is asking, and what they may see.

``demo`` (aiohttp) and the worker (Faust's web server) both call :func:`handle`. Every
``/api`` request needs ``Authorization: Bearer <token>``; tokens and roles come from
``STORMWATCH_API_TOKENS``. A regulator sees every platform; a platform's team sees only its
own platform, and asking for another one is 403, never the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compliance.ledger import describe, ledger_state, orders_of, scorecard
from events.alerts import REGULATOR


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
    """Where the API reads from: the latest alert versions, the ledger state, and event time now."""

    alerts: Mapping[str, dict]
    ledger: MutableMapping[str, Any]
    now: Callable[[], float]


def visible(alerts, caller: Caller, wanted: str | None) -> list[dict]:
    """The alerts this caller may read. A finding that spans platforms in full (``audience:
    regulator``) is the regulator's alone; each platform has its own part as its own alert."""
    return [a for a in alerts if caller.may_see(a["platform"]) and (wanted is None or a["platform"] == wanted)
            and (caller.role == "regulator" or a.get("audience") != REGULATOR)]


def _since(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def handle(path: str, query: Mapping[str, str], authorization: str | None,
           tokens: Mapping[str, Mapping[str, str]], sources: Sources) -> tuple[int, Any]:
    """(status, JSON body) for one GET request under /api."""
    caller = authenticate(tokens, authorization)
    if caller is None:
        return 401, {"error": "missing or unknown bearer token"}
    wanted = query.get("platform") or None
    if wanted is not None and not caller.may_see(wanted):
        return 403, {"error": f"this token may not read platform {wanted!r}"}
    parts = [p for p in path.split("/") if p]
    if parts == ["api", "alerts"]:
        try:
            since = _since(query.get("since"))
        except ValueError:
            return 400, {"error": "since: not an RFC 3339 timestamp"}
        rows = [a for a in visible(sources.alerts.values(), caller, wanted)
                if (not query.get("kind") or a["kind"] == query["kind"])
                and (not query.get("subject") or a["subject"]["id"] == query["subject"])
                and (since is None or datetime.fromisoformat(a["ts"]).timestamp() >= since)]
        rows.sort(key=lambda a: (datetime.fromisoformat(a["ts"]).timestamp(), a["alert_id"]), reverse=True)
        return 200, rows
    if parts == ["api", "campaigns"]:
        rows = [a for a in visible(sources.alerts.values(), caller, wanted)
                if a["kind"] == "water_army_campaign" and "merged_into" not in a["evidence"]]
        return 200, sorted(rows, key=lambda a: (-len(a["evidence"]["accounts"]), a["alert_id"]))
    if parts == ["api", "cascades"]:
        cascades: dict[tuple[str, str], dict] = {}
        for a in visible(sources.alerts.values(), caller, wanted):
            if a["subject"]["type"] == "post" and a["kind"] in ("viral_spread", "legal_threshold"):
                row = cascades.setdefault((a["platform"], a["subject"]["id"]), {
                    "post_id": a["subject"]["id"], "platform": a["platform"], "figures_crossed": [], "alerts": []})
                row["alerts"].append(a["alert_id"])
                if a["kind"] == "legal_threshold":
                    row["figures_crossed"].append(a["evidence"]["threshold"])
                row["views"] = max(row.get("views", 0), a["evidence"].get("views", 0))
                row["reposts"] = max(row.get("reposts", 0), a["evidence"].get("reposts", 0))
        return 200, sorted(cascades.values(), key=lambda r: (-r["reposts"], r["post_id"]))
    if parts == ["api", "orders"]:
        now = sources.now()
        rows = [describe(order_id, record, now) for platform, order_id, record in orders_of(sources.ledger, wanted)
                if record["order"] is not None and caller.may_see(platform)
                and (not query.get("state") or ledger_state(record, now) == query["state"])]
        return 200, rows
    if len(parts) == 4 and parts[:2] == ["api", "platforms"] and parts[3] == "scorecard":
        if not caller.may_see(parts[2]):
            return 403, {"error": f"this token may not read platform {parts[2]!r}"}
        return 200, scorecard(sources.ledger, parts[2], sources.now())
    return 404, {"error": "no such endpoint"}


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
