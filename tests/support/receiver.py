"""A real HTTP webhook receiver on 127.0.0.1 for tests: records requests, can fail, be slow or be down."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.kafka_broker import free_port


class Receiver:
    def __init__(self, port: int | None = None, fail_first: int = 0, always_fail: bool = False,
                 delay_s: float = 0.0) -> None:
        self.port = port or free_port()
        self.fail_first, self.always_fail, self.delay_s = fail_first, always_fail, delay_s
        self.requests: list[dict] = []  # every request, failed or not
        self.accepted: list[dict] = []  # those answered 2xx
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (a killed worker): nothing was delivered
                    return
                record = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "path": self.path,
                          "received": time.time()}
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.requests.append(record)
                    fail = receiver.always_fail or len(receiver.requests) <= receiver.fail_first
                    if not fail:
                        receiver.accepted.append(record)
                self.send_response(500 if fail else 204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def alerts(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.accepted]
