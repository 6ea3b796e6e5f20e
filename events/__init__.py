"""The contract: input event models, the alert record, and the detector interface.

The bottom layer: it imports nothing else from Stormwatch.
"""

from events.alerts import ALERT_KINDS, Alert, Subject, alert_id, raise_alert
from events.decode import DeadLetter, decode, raw_text
from events import keys
from events.detector import Context, Detector
from events.models import (
    INPUT_TOPICS, TOPIC_BY_TYPE, Account, AnyEvent, ArmyAct, Case, CascadeFinding, CoAction, Engagement, Item, Order,
    PlatformAction, Post, Report, StrongPair, StrongPairs, Target, Tick,
    format_ts,
)

__all__ = [
    "ALERT_KINDS", "Account", "Alert", "AnyEvent", "ArmyAct", "Case", "CascadeFinding", "CoAction", "Context", "DeadLetter",
    "Detector", "Engagement", "INPUT_TOPICS", "Item", "Order", "PlatformAction", "Post", "Report", "StrongPair", "StrongPairs",
    "Subject",
    "TOPIC_BY_TYPE",
    "Target", "Tick", "alert_id", "decode", "format_ts", "raise_alert", "raw_text",
]
