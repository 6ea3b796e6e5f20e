"""The folders say where a finding is decided and where alerts leave, and imports keep to that
direction (issue 18): a lower layer never imports a higher one, even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own layer and the layers below it.
LAYERS = [
    ("events",),                        # the contract
    ("compliance",),                    # the law's figures
    ("detectors",),                     # where findings are decided
    ("evidence",),                      # the evidence log, fed beside the engine
    ("streams",),                       # engine, local runner, registry, settings, metrics
    ("streams.outputs",),               # where alerts leave: webhooks, Alertmanager, API, dashboard
    ("streams.kafka",),                 # the Faust worker
    ("commands",),                      # the stormwatch commands
]
# The one settings object gathers every part's settings model, so it reads them from above.
ALLOWED = {("streams.settings", "streams.outputs"), ("streams.settings", "streams.kafka")}


def layer(module: str) -> int | None:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    return best[0] if best else None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def violations() -> list[str]:
    out = []
    for top in {p[0].split(".")[0] for p in LAYERS}:
        for path in sorted((ROOT / top).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            mine = layer(module)
            for name in imports(path):
                theirs = layer(name)
                if theirs is None or theirs <= mine:
                    continue
                if any(module.startswith(a) and name.startswith(b) for a, b in ALLOWED):
                    continue
                out.append(f"{module} imports {name}")
    return sorted(set(out))


def test_imports_go_down_the_layers() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(monkeypatch) -> None:  # noqa: ANN001
    """Without its one exception, the settings module's imports from above are reported."""
    monkeypatch.setitem(globals(), "ALLOWED", set())
    assert "streams.settings imports streams.outputs.delivery" in violations()


def test_each_alert_kind_has_exactly_one_detector() -> None:
    from events import ALERT_KINDS
    from streams.registry import build_detectors, check_kinds
    from streams.settings import Settings

    detectors = build_detectors(Settings())
    owners = {kind: d.name for d in detectors for kind in d.raises}
    assert sorted(owners) == sorted(ALERT_KINDS)

    class Stray:
        name, raises = "stray", ("viral_spread", "no_such_kind")

    try:
        check_kinds([*detectors, Stray()])
    except ValueError as err:
        assert "no_such_kind" in str(err) and "viral_spread" in str(err)
    else:
        raise AssertionError("a second owner of viral_spread and an unknown kind went unnoticed")


def test_a_detector_raising_an_undeclared_kind_is_a_detector_failure() -> None:
    from detectors.orders import OrderLedger
    from streams.engine import Engine
    from tests.support.events import action, feed, order

    class Quiet(OrderLedger):
        raises = ("order_overdue",)  # but it raises order_refused too

    engine = Engine([Quiet()])
    alerts = feed(engine, [order("o1", 0, 60), action("a1", "o1", 1, "refused")])
    assert [a["kind"] for a in alerts] == []
    assert [(name, "order_refused" in str(err)) for name, err, _event in engine.drain_failures()] == [("orders", True)]


def test_the_readme_names_the_file_that_decides_each_kind() -> None:
    import re
    import sys

    from streams.registry import build_detectors
    from streams.settings import Settings

    rows = dict(re.findall(r"^\| `(\w+)` \|.*\| `([\w/]+\.py)` \|$", (ROOT / "README.md").read_text(), re.M))
    files = {kind: sys.modules[type(d).__module__].__file__ for d in build_detectors(Settings()) for kind in d.raises}
    assert {kind: str(Path(f).relative_to(ROOT)) for kind, f in files.items()} == rows
