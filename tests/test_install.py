"""A plain ``pip install`` of the package runs every command: every runtime import is declared."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.kafka_broker import free_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("events", "streams", "detectors", "compliance", "evidence", "commands")
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"faust": "faust-streaming", "kafka": "kafka-python", "prometheus_client": "prometheus-client",
                "pydantic_settings": "pydantic-settings", "yaml": "pyyaml", "sklearn": "scikit-learn",
                "mode": "mode-streaming"}
BUNDLED = {"rocksdict": "faust-streaming[rocksdict]"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {dep.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
            for dep in project["dependencies"]}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    third_party = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            third_party |= _imports(path) - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}
    missing = {name for name in third_party if DISTRIBUTION.get(name, name).lower() not in _declared()
               and name not in BUNDLED}
    assert "httpx" in third_party and not missing, f"imported at run time but not in [project.dependencies]: {missing}"


def test_a_plain_install_runs_replay_and_demo(tmp_path: Path) -> None:
    """A fresh venv, ``pip install`` of the package without extras, then the commands a user runs first."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    stormwatch = str(venv / "bin" / "stormwatch")
    shipped = subprocess.run([str(venv / "bin" / "python"), "-c", "from streams.outputs.api import static_file; "
                              "print(len(static_file('echarts.min.js')[0]))"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60)
    assert shipped.returncode == 0 and int(shipped.stdout) > 500_000, shipped.stderr  # the dashboard's charts
    events = tmp_path / "events.jsonl"
    generate = "from commands.simulator import SimConfig, simulate_lines\n" \
               "import sys\nsys.stdout.buffer.write(b'\\n'.join(simulate_lines(SimConfig(minutes=10, organic_per_s=2))))"
    events.write_bytes(subprocess.run([str(venv / "bin" / "python"), "-c", generate], capture_output=True,
                                      check=True, cwd=tmp_path, timeout=120).stdout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORMWATCH_")}
    replay = subprocess.run([stormwatch, "replay", str(events), "--alerts-out", str(tmp_path / "alerts.jsonl")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert b"order_refused" in (tmp_path / "alerts.jsonl").read_bytes()
    demo = subprocess.run([stormwatch, "demo", "--exit-when-done", "--speed", "0", "--minutes", "10",
                           "--port", str(free_port())], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "order_refused" in demo.stdout + demo.stderr
