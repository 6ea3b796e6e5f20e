"""``stormwatch demo`` prints alerts safely whatever their strings hold (issue 14, item 7).

Order ids, regulators and dead-letter errors come from platforms and regulators, not from us:
Rich markup in them must not crash the demo, and terminal escape sequences must not reach the
operator's terminal (clear screen, window title, hyperlinks, bidi reordering).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.events import lines, order, tick
from tests.support.kafka_broker import free_port

HOSTILE_IDS = ["[/oops]", "[bold red]x", "clear\x1b[2Jscreen", "title\x1b]0;pwned\x07", "c1\x9bcsi",
               "bidi\u202eevil\u202c", "line\nbreak"]


def test_demo_prints_hostile_strings_visibly_and_without_escapes(stormwatch_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "hostile.jsonl"
    events = [order(oid, n, 5, regulator=f"reg[/]{n}\x1b[31m") for n, oid in enumerate(HOSTILE_IDS)]
    src.write_bytes(lines([*events, tick(30)]) + b'{"type": "post", "post_id": "\\u001b[2J[/x]"}\n')
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    done = subprocess.run([stormwatch_bin, "demo", "--replay", str(src), "--exit-when-done", "--speed", "0",
                           "--port", str(free_port())], capture_output=True, timeout=120,
                          env={**env, "COLUMNS": "300", "NO_COLOR": "1"})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out.decode(errors="replace")
    assert b"\x1b" not in out and b"\x07" not in out and "\x9b".encode() not in out
    assert "\u202e".encode() not in out and "\u202c".encode() not in out
    text = out.decode()
    assert text.count("order_overdue") == len(HOSTILE_IDS)
    for shown in ["[/oops]", "[bold red]x", r"clear\x1b[2Jscreen", r"title\x1b]0;pwned\x07", r"c1\x9bcsi",
                  r"bidi\u202eevil\u202c", r"line\nbreak", r"reg[/]0\x1b[31m"]:
        assert shown in text, shown
    assert "dead letter hostile.jsonl:9" in text


def test_printable_replaces_every_control_and_bidi_character() -> None:
    from commands.demo import printable

    assert printable("plain 网络暴力 [b]x[/b]") == "plain 网络暴力 [b]x[/b]"
    assert printable("a\x00b\x1fc\x7fd\x85e\u2028f\u2066g\u200fh\tz") == \
        r"a\x00b\x1fc\x7fd\x85e\u2028f\u2066g\u200fh\tz"
