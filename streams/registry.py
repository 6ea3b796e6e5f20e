"""Which detectors run. The one place a new detector is switched on."""

from __future__ import annotations

from compliance.ledger import OrderLedger
from detectors.cascades import Cascades
from detectors.targets import PostTargets, Targets
from detectors.water_army import WaterArmy
from events import Detector
from streams.settings import Settings


def build_detectors(settings: Settings) -> list[Detector]:
    detectors: list[Detector] = [
        OrderLedger(settings.ledger, settings.law),
        WaterArmy(settings.water_army),
        Cascades(settings.cascades, settings.law),
        PostTargets(settings.targets),  # before Targets: it hands reports on to it
        Targets(settings.targets),
    ]
    names = [d.name for d in detectors]
    assert len(names) == len(set(names)), f"detector names must be unique: {names}"
    wanted = [n.strip() for n in settings.detectors.split(",") if n.strip()]
    if not wanted:
        return detectors
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"STORMWATCH_DETECTORS names unknown detectors {unknown}; known: {names}")
    return [d for d in detectors if d.name in wanted]
