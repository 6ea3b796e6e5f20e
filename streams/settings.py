"""Every setting in one object, read from ``STORMWATCH_*`` environment variables.

Detector settings are nested models defined beside each detector and set with a double
underscore, e.g. ``STORMWATCH_LEDGER__...``. Defaults work on a laptop.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from compliance.law import LawSettings
from detectors.orders import LedgerSettings
from detectors.cascades import CascadeSettings
from detectors.targets import TargetSettings
from detectors.water_army import WaterArmySettings
from events.decode import MAX_FUTURE_S
from evidence.recorder import EvidenceSettings
from streams.outputs.alertmanager import AlertmanagerSettings
from streams.outputs.delivery import DeliverySettings
from streams.kafka.view import VIEW_HORIZON_S


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORMWATCH_", env_nested_delimiter="__", frozen=True)

    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap (worker, produce).")
    topic_prefix: str = Field("", description="Prefix for every topic name (several environments on one cluster).")
    app_id: str = Field("stormwatch", description="Faust app id: consumer group and table topic prefix.")
    partitions: int = Field(4, ge=1, description="Partitions of the input and stage topics (must match pre-created topics).")
    replication: int = Field(1, ge=1, description="Replication factor of the topics Stormwatch creates.")
    store: str = Field("rocksdb://", description="Faust table store: rocksdb:// in production, memory:// for tests.")
    data_dir: Path = Field(Path("stormwatch-data"), description="Where the worker keeps RocksDB state.")
    web_host: str = Field("127.0.0.1", description="Address the worker's and demo's web server binds to.")
    web_port: int = Field(6066, description="Port of the worker's web server (metrics, health).")
    web_timeout_s: float = Field(15.0, gt=0, description="Worker and demo web server: a client gets this long "
                                 "to send a whole request (partial headers, silent connections are closed).")
    allowed_lateness_s: float = Field(30.0, ge=0, description="Event-time lateness allowed before a deadline fires.")
    dedupe_window_s: float = Field(
        3600.0, gt=0, description="A duplicate event (same platform and event_id) is recognised and dropped this "
        "long behind event time; an event older than that is dead-lettered as late. Memory: about 100 bytes per "
        "event of the window, per detector that takes it.",
    )
    max_future_s: float = Field(MAX_FUTURE_S, ge=0, description="An event whose ts is more than this far ahead of "
                                "the wall clock when it arrives is dead-lettered (future_ts).")
    tick_interval_s: float = Field(
        5.0, ge=0, description="Worker: send a wall-clock tick to every input partition this often (0 = off). "
        "Turn it off when feeding historical data through Kafka.",
    )

    stage_batch: int = Field(500, ge=1, description="Worker: most stage records (each holds many events) a stage "
                             "takes in one batch, after which it writes its state changes to the changelog (one "
                             "write per changed key per batch).")
    stage_batch_wait_s: float = Field(0.05, gt=0, description="Worker: longest a stage waits to fill a batch.")
    stage_busy_linger_s: float = Field(0.2, ge=0, description="Worker: after a batch that held at least "
                                       "`stage_batch` events but fewer records, how long a stage lets records "
                                       "gather before the next (bigger batches under load; 0 = never).")
    fetch_wait_s: float = Field(0.1, gt=0, le=30, description="Worker: longest the broker holds a fetch of the "
                                "input or stage topics when no partition asked for has a record (Faust fixes 1.5 s "
                                "and aiokafka's default is 0.5 s: a fetch of quiet partitions held back the busy "
                                "ones).")
    producer_linger_s: float = Field(0.01, ge=0, description="Worker: how long the Kafka producer gathers messages "
                                     "into one request (Faust's default, 0, sends tiny requests: about 30% slower).")
    producer_batch_bytes: int = Field(524_288, ge=1024, le=1_000_000, description="Worker: largest record batch "
                                      "the Kafka producer builds for one partition. The producer has one request in "
                                      "flight and a partition's next batch waits for the last to leave, so with "
                                      "aiokafka's 16 KB a busy changelog went out 16 KB a round trip (a third slower "
                                      "drain, issue 15). At most the broker's message.max.bytes (1 MB by default).")
    producer_request_bytes: int = Field(4_000_000, ge=1024, le=50_000_000, description="Worker: largest produce "
                                        "request (several partitions' batches).")

    gc_threshold: int = Field(50_000, ge=0, description="New container objects between runs of Python's cycle "
                              "collector (Python's default, 700, rescans detector state over and over: 40% of "
                              "replay time at 400k posts/day); 0 keeps Python's default.")
    gc_middle_passes: int = Field(100, ge=0, description="Young passes of the cycle collector between passes over "
                                  "the middle generation (what survived a young pass): windowed records (texts, "
                                  "objects) mostly expire before it comes; with Python's default, 10, the collector took 13% of "
                                  "replay time at 360k events, 6% with 100. 0 keeps Python's default.")

    detectors: str = Field("", description="Comma-separated detector names to run (orders, water_army, cascades, "
                           "post_targets, targets); empty = all of them.")
    platforms: str = Field("", description="Comma-separated platform ids this deployment takes events from; an "
                           "event (or tick) naming another is dead-lettered (invalid_field, platform). Empty = any "
                           "id: each platform name then costs state in every stage partition it reaches.")

    webhook_urls: str = Field("", description="Comma-separated endpoints that receive every alert version.")
    webhook_secret: str | None = Field(None, description="Standard Webhooks secret (whsec_ + base64) for them.")
    delivery: DeliverySettings = DeliverySettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    api_tokens: dict[str, dict[str, str]] = Field(
        default_factory=dict, description='JSON: token -> {"role": "regulator"} or {"role": "platform", "platform": id}.',
    )

    view_horizon_s: float = Field(VIEW_HORIZON_S, gt=0, description="Worker: the API's alerts go back this far "
                                  "in event time from the newest alert; on start the view reads the alerts topic "
                                  "from this far back in wall-clock time.")

    evidence_signing_key: str | None = Field(
        None, description="Base64 of a raw 32-byte Ed25519 private key that signs evidence tree heads; unset, "
        "each evidence log gets a new key (its public key is written beside the log).",
    )
    evidence: EvidenceSettings = EvidenceSettings()

    ledger: LedgerSettings = LedgerSettings()
    water_army: WaterArmySettings = WaterArmySettings()
    cascades: CascadeSettings = CascadeSettings()
    targets: TargetSettings = TargetSettings()
    law: LawSettings = LawSettings()

    @property
    def fetch_wait_ms(self) -> int:
        """``fetch_wait_s`` as the whole milliseconds a Kafka fetch request carries (at least 1)."""
        return max(1, round(self.fetch_wait_s * 1000))

    def platform_ids(self) -> frozenset[str]:
        """:attr:`platforms` as a set (empty: any platform is taken)."""
        return frozenset(p.strip() for p in self.platforms.split(",") if p.strip())

    def topic(self, name: str) -> str:
        """The Kafka topic of one of the contract's topics (``posts``, ``alerts``, ...)."""
        return self.topic_prefix + name


def bootstrap_servers(broker: str) -> list[str]:
    """``kafka://h1:9092;h2:9092`` (Faust's form) to kafka-python's ``["h1:9092", "h2:9092"]``."""
    hosts = broker.replace(";", ",").split(",")
    return [h.strip().removeprefix("kafka://").rstrip("/") for h in hosts if h.strip()]
