"""The web server (demo's; the worker uses the same pieces from streams.api): slow clients are cut
off."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from streams.api import Sources
from streams.demo import _web_app, serve
from streams.settings import Settings
from tests.support.kafka_broker import free_port


@contextmanager
def demo_server(timeout_s: float) -> Iterator[int]:
    """The demo's web app on 127.0.0.1, served from a thread as ``run_demo`` serves it."""
    loop = asyncio.new_event_loop()
    port = free_port()
    sources = Sources(alerts={}, ledger={}, now=lambda: 0.0)
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
