"""The one route table of Stormwatch's web server, served by the demo and by every worker.

Both run aiohttp (the worker through Faust's web driver, whose own pages are off), so both get
the same handlers: the API with its token check, the evidence bundle, the dashboard and its
chart library, metrics and health. What differs is passed in: where the API reads from
(``Sources``), how a bundle is exported, and what health reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from streams import metrics
from streams.outputs.api import DASHBOARD, OPENAPI, Sources, evidence_bundle, handle, static_file

INDEX = ("Stormwatch. /dashboard, /metrics (Prometheus), /healthz, /api/alerts, /api/orders, "
         "/api/platforms/{platform}/scorecard (bearer token from STORMWATCH_API_TOKENS).\n")


def route_table(tokens: dict[str, dict[str, str]], sources: Sources | None, health: Callable[[], dict],
                export: Callable[[str], bytes] | None = None) -> list[web.RouteDef]:
    """Every route. ``sources`` None: no API (the demo before its pipeline exists). ``export``:
    an alert id to its bundle's bytes (blocking: run in a thread), or None for no evidence route."""

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=INDEX)

    async def metrics_page(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def healthz(_request: web.Request) -> web.Response:
        # "200 when ready" (the contract): a health that says ``ready: False`` (a worker before its
        # first partitions and tables) is a 503, so a probe or a harness does not feed it too soon
        report = health()
        if report.get("ready", True):
            return web.json_response({"status": "ok", **report})
        return web.json_response({"status": "starting", **report}, status=503)

    async def dashboard(_request: web.Request) -> web.Response:
        return web.Response(body=DASHBOARD.read_bytes(), content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        found = static_file(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], headers={"Content-Type": found[1], "Cache-Control": "max-age=3600"})

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def api(request: web.Request) -> web.Response:
        status, body = handle(request.path, request.query, request.headers.get("Authorization"), tokens, sources)
        return web.json_response(body, status=status)

    async def evidence(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        status, body = await asyncio.get_running_loop().run_in_executor(
            None, evidence_bundle, alert_id, request.headers.get("Authorization"), tokens, sources.alerts, export)
        if status != 200:
            return web.json_response(body, status=status)
        return web.Response(body=body, content_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="evidence-{alert_id}.zip"'})

    table = [web.get("/", index), web.get("/metrics", metrics_page), web.get("/healthz", healthz),
             web.get("/dashboard", dashboard), web.get("/static/{name}", static), web.get("/openapi.json", openapi)]
    if sources is not None:
        if export is not None:
            table.append(web.get("/api/alerts/{alert_id}/evidence", evidence))
        table.append(web.get("/api/{tail:.*}", api))
    return table
