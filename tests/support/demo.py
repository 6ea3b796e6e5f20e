"""``stormwatch demo --replay FILE`` as a test server: started, waited for, stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.kafka_broker import free_port


@contextmanager
def demo_serving(src: Path, tokens: dict) -> Iterator[str]:
    """The demo fed ``src``, with these API tokens; yields its base URL once the file is fed."""
    port = free_port()
    env = {**os.environ, "STORMWATCH_API_TOKENS": json.dumps(tokens)}
    stormwatch = os.path.join(os.path.dirname(sys.executable), "stormwatch")
    proc = subprocess.Popen([stormwatch, "demo", "--replay", str(src), "--speed", "0", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).json()["fed"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
