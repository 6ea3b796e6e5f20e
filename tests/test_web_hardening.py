"""The web server (demo's; the worker uses the same pieces from streams.outputs.api): slow clients are cut
off, and every response carries the headers a security review expects."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from streams.outputs.api import Sources
from commands.demo import _web_app, serve
from streams.outputs.api import DASHBOARD
from streams.settings import Settings
from tests.support.kafka_broker import free_port


@contextmanager
def demo_server(timeout_s: float) -> Iterator[int]:
    """The demo's web app on 127.0.0.1, served from a thread as ``run_demo`` serves it."""
    loop = asyncio.new_event_loop()
    port = free_port()
    sources = Sources(alerts={}, ledger={}, now=lambda _platform: 0.0)
    settings = Settings(api_tokens={"reg": {"role": "regulator"}})
    runner = loop.run_until_complete(serve(_web_app({"fed": True}, settings, sources), "127.0.0.1", port, timeout_s))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def closed_after(sock: socket.socket, limit: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (sending ``trickle`` a byte at a time meanwhile)."""
    started = time.monotonic()
    sock.settimeout(0.25)
    while time.monotonic() - started < limit:
        if trickle:
            try:
                sock.sendall(trickle[:1])
            except OSError:
                return time.monotonic() - started
            trickle = trickle[1:]
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:  # reset
            return time.monotonic() - started
    raise AssertionError(f"the server kept the connection open for {limit} s")


@pytest.mark.parametrize("how", ["partial headers, then silence", "headers a byte at a time", "nothing at all"])
def test_a_slow_or_silent_client_is_disconnected(how: str) -> None:
    with demo_server(timeout_s=1.0) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            if how == "partial headers, then silence":
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                assert closed_after(sock, 6) < 4
            elif how == "headers a byte at a time":
                assert closed_after(sock, 6, trickle=b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X" * 200) < 4
            else:
                assert closed_after(sock, 6) < 4
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # others still served


def test_a_client_that_keeps_asking_stays_connected() -> None:
    with demo_server(timeout_s=1.0) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for _ in range(4):  # 2 s on one keep-alive connection, longer than the timeout
            assert client.get("/healthz").status_code == 200
            time.sleep(0.5)


def test_every_response_carries_the_security_headers() -> None:
    with demo_server(timeout_s=5.0) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        auth = {"Authorization": "Bearer reg"}
        responses = {path: client.get(path, headers=auth) for path in
                     ("/dashboard", "/api/orders", "/api/nothing", "/healthz", "/metrics", "/openapi.json", "/nope")}
    assert [r.status_code for r in responses.values()] == [200, 200, 404, 200, 200, 200, 404]
    for path, r in responses.items():
        assert r.headers["X-Frame-Options"] == "DENY", path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert r.headers["Referrer-Policy"] == "no-referrer", path
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert (r.headers.get("Cache-Control") == "no-store") == path.startswith("/api/"), path
    # The dashboard's own inline script and style, and nothing else, run.
    page = DASHBOARD.read_bytes()
    csp = responses["/dashboard"].headers["Content-Security-Policy"]
    for tag in (b"script", b"style"):
        inline = re.search(rb"<%s>(.*?)</%s>" % (tag, tag), page, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
        assert f"{tag.decode()}-src 'self' 'sha256-{digest}'" in csp
