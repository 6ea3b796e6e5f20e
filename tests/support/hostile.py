"""A hostile webhook receiver on 127.0.0.1 for tests: it trickles its answer or sends a huge one.

Plain sockets in threads, so the server behaves the same whatever the client's event loop does.
Modes:
- ``trickle_headers``: the status line and headers one byte every ``interval_s``, forever;
- ``trickle_body``: headers at once (a long ``content-length``), then the body one byte every
  ``interval_s``;
- ``huge``: ``200 OK`` with a ``size``-byte body, sent as fast as the client takes it.
``sent`` counts the body bytes the kernel accepted; the send fails once the client has closed.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.kafka_broker import free_port


class HostileReceiver:
    def __init__(self, mode: str, interval_s: float = 0.5, size: int = 50 * 2**20) -> None:
        self.mode, self.interval_s, self.size = mode, interval_s, size
        self.port = free_port()
        self.connections = 0
        self.sent = 0
        self.stopped = threading.Event()
        self.sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "HostileReceiver":
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.sock is not None:
            self.sock.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._read_request(conn)
                if self.mode == "trickle_headers":
                    self._trickle(conn, b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" + b"x-slow: y" * 10**6)
                elif self.mode == "trickle_body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
                    self._trickle(conn, b"." * 10**6)
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % self.size)
                    chunk = b"x" * 65536
                    for _ in range(self.size // len(chunk)):
                        conn.sendall(chunk)
                        self.sent += len(chunk)
            except OSError:  # the client gave up and closed: what the tests want
                pass

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                raise ConnectionResetError("the client closed before its request ended")
            data += more
        head, body = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for byte in data:
            if self.stopped.is_set():
                return
            conn.sendall(bytes([byte]))
            time.sleep(self.interval_s)
