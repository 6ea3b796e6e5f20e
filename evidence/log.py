"""The append-only evidence log in a directory, and its signed tree heads.

An evidence folder (``--evidence-dir``, :class:`PlatformLogs`) holds one tree per platform, as
the Kafka worker writes it (one writer per platform): one platform's log never shows another's
entries, sizes or timing, and the same stream gives the same trees in every mode. Its files:
``public-key`` (one key signs every tree), ``platforms.jsonl`` (a line per tree, in order of
first use: ``{"platform": ..., "folder": ...}``) and one folder per platform, named by the
first 32 hex digits of the SHA-256 of the platform id (ids may hold any character; a reader
checks each name against its platform), each holding one tree.

Files of a tree's folder (all append-only; :class:`EvidenceLog`):

* ``entries.jsonl``: one entry per line; the line's bytes (without the newline) are the
  Merkle leaf. An entry is the alert it supports (``alert_id``, ``version``), what the event
  is (``role``: "crossing event", "order", ...), the event's ``type``, ``event_id`` and ``ts``,
  and its raw input bytes as received (``raw``, base64) with their ``sha256``. The alert
  version itself is an entry too (role "alert version", its JSON as ``raw``, ``supports``
  naming the entries it cites), so figures are as tamper-evident as the events.
* ``tree-heads.jsonl``: a signed tree head (STH) after each alert version: tree size, root
  hash, timestamp and an Ed25519 signature over :func:`sth_message`. The timestamp is EVENT
  time (the latest alert's ``ts``), never the clock, so the same stream gives the same bytes.
* ``public-key``: the Ed25519 public key (base64 of the raw 32 bytes) that verifies the heads.

Entries are serialised with sorted keys (orjson), so the same entry is the same bytes.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from evidence.merkle import MerkleTree
from events.models import format_ts

ENTRIES = "entries.jsonl"
PLATFORMS = "platforms.jsonl"
TREE_HEADS = "tree-heads.jsonl"
PUBLIC_KEY = "public-key"
STH_FORMAT = "stormwatch-sth-v1\n{tree_size}\n{timestamp}\n{root_hash}\n"


def sth_message(tree_size: int, timestamp: str, root_hash: str) -> bytes:
    """The exact bytes an STH signature covers (documented in every bundle's manifest)."""
    return STH_FORMAT.format(tree_size=tree_size, timestamp=timestamp, root_hash=root_hash).encode()


def signed_head(key: Ed25519PrivateKey, size: int, timestamp: float, root: bytes) -> dict:
    """A signed tree head at event time ``timestamp``, keys in sorted order as read back from
    disk (a bundle from memory equals one from the folder; the worker's records the same)."""
    ts, root_hex = format_ts(timestamp), root.hex()
    signature = base64.b64encode(key.sign(sth_message(size, ts, root_hex))).decode()
    return {"root_hash": root_hex, "signature": signature, "timestamp": ts, "tree_size": size}


def signing_key(b64: str) -> Ed25519PrivateKey:
    """The key of ``STORMWATCH_EVIDENCE_SIGNING_KEY``: base64 of the raw 32-byte private key."""
    raw = base64.b64decode(b64.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError(f"evidence_signing_key: {len(raw)} bytes, expected a raw 32-byte Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def canonical(entry: dict) -> bytes:
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


class EvidenceLog:
    """One Merkle tree of entries, mirrored to ``directory`` when given (write-through).

    Open an existing directory read-only with :meth:`open` (export, verify); start a new one
    with ``EvidenceLog(directory, key)``. Writing into a directory that already holds a log is
    refused: appending a second run would give the same alerts twice.
    """

    def __init__(self, directory: Path | None, key: Ed25519PrivateKey | None) -> None:
        self.directory = directory
        self.key = key
        self.leaves: list[bytes] = []
        self.tree = MerkleTree()
        self.tree_heads: list[dict] = []
        self.log_time = 0.0  # event time of the latest alert logged: the next tree head's timestamp
        self.by_alert: dict[str, list[int]] = {}
        self.public_key = public_key_b64(key) if key is not None else None
        self._entries = self._heads = None
        if directory is not None and key is not None:
            directory.mkdir(parents=True, exist_ok=True)
            if (directory / ENTRIES).exists() and (directory / ENTRIES).stat().st_size:
                raise FileExistsError(f"{directory} already holds an evidence log; use a new directory")
            (directory / PUBLIC_KEY).write_text(self.public_key + "\n")
            self._entries = (directory / ENTRIES).open("wb")
            self._heads = (directory / TREE_HEADS).open("wb")

    @classmethod
    def open(cls, directory: Path) -> "EvidenceLog":
        """A log written earlier, read back (no signing key: it can export, not append)."""
        log = cls(None, None)
        log.directory = directory
        if not (directory / ENTRIES).exists():
            raise FileNotFoundError(f"no evidence log in {directory} (no {ENTRIES})")
        with (directory / ENTRIES).open("rb") as handle:
            for line in handle:
                line = line.rstrip(b"\n")
                if line:
                    log._add(line, orjson.loads(line)["alert_id"])
        with (directory / TREE_HEADS).open("rb") as handle:
            log.tree_heads = [orjson.loads(line) for line in handle if line.strip()]
        log.public_key = (directory / PUBLIC_KEY).read_text().strip()
        return log

    def _add(self, leaf: bytes, alert_id: str) -> int:
        index = self.tree.append(leaf)
        self.leaves.append(leaf)
        self.by_alert.setdefault(alert_id, []).append(index)
        return index

    def append(self, entry: dict) -> int:
        """Add one entry (``index`` is filled in); returns its leaf index."""
        entry["index"] = len(self.leaves)
        leaf = canonical(entry)
        if self._entries is not None:
            self._entries.write(leaf + b"\n")
        return self._add(leaf, entry["alert_id"])

    def sign_tree_head(self, timestamp: float) -> dict:
        """Sign the current tree at event time ``timestamp``; kept and written out."""
        if self.key is None:
            raise RuntimeError("a log opened read-only cannot sign")
        head = signed_head(self.key, len(self.leaves), timestamp, self.tree.root())
        self.tree_heads.append(head)
        if self._heads is not None:
            self._heads.write(canonical(head) + b"\n")
            self._entries.flush()  # entries first, so a head on disk never names entries that are not
            self._heads.flush()
        return head

    def head_covering(self, index: int) -> dict | None:
        """The first tree head that includes entry ``index`` (the one signed when it was new)."""
        sizes = [h["tree_size"] for h in self.tree_heads]
        at = bisect.bisect_right(sizes, index)
        return self.tree_heads[at] if at < len(self.tree_heads) else None

    def close(self) -> None:
        for handle in (self._entries, self._heads):
            if handle is not None:
                handle.close()
        self._entries = self._heads = None


def folder_name(platform: str) -> str:
    """A platform tree's folder: 32 hex digits of the SHA-256 of its id (ids may hold any character)."""
    return hashlib.sha256(platform.encode()).hexdigest()[:32]


class NotFound(KeyError):
    """No evidence logged for this alert (never raised, regulator-only, or shadow)."""


class PlatformLogs:
    """The evidence of a whole stream: an :class:`EvidenceLog` per platform (see the module
    docstring), written to ``directory`` when given, in memory otherwise."""

    def __init__(self, directory: Path | None, key: Ed25519PrivateKey | None) -> None:
        self.directory, self.key = directory, key
        self.logs: dict[str, EvidenceLog] = {}
        self.public_key = public_key_b64(key) if key is not None else None
        self._index = None
        if directory is not None and key is not None:
            directory.mkdir(parents=True, exist_ok=True)
            if next(directory.iterdir(), None) is not None:
                raise FileExistsError(f"{directory} is not empty (an evidence log goes to a new or empty directory)")
            (directory / PUBLIC_KEY).write_text(self.public_key + "\n")
            self._index = (directory / PLATFORMS).open("wb")

    def log_for(self, platform: str) -> EvidenceLog:
        """The platform's tree, started on first use."""
        log = self.logs.get(platform)
        if log is None:
            folder = None
            if self._index is not None:
                name = folder_name(platform)
                folder = self.directory / name
                self._index.write(orjson.dumps({"platform": platform, "folder": name}) + b"\n")
                self._index.flush()
            log = self.logs[platform] = EvidenceLog(folder, self.key)
        return log

    @classmethod
    def of(cls, logs: dict[str, EvidenceLog]) -> "PlatformLogs":
        """Trees read elsewhere (the worker's ``evidence-log`` topic), read-only."""
        platform_logs = cls(None, None)
        platform_logs.logs = logs
        return platform_logs

    @classmethod
    def open(cls, directory: Path) -> "PlatformLogs":
        """A folder written earlier, read back. A folder of one tree (written before trees were
        per platform) reads as that one tree."""
        logs = cls(None, None)
        logs.directory = directory
        if (directory / ENTRIES).exists():
            logs.logs[""] = EvidenceLog.open(directory)
        elif (directory / PLATFORMS).exists():
            for line in (directory / PLATFORMS).read_bytes().splitlines():
                if line.strip():
                    row = orjson.loads(line)
                    if row["folder"] != folder_name(row["platform"]):  # never a path from the file itself
                        raise ValueError(f"{directory / PLATFORMS}: folder {row['folder']!r} is not the one "
                                         f"of platform {row['platform']!r}")
                    logs.logs[row["platform"]] = EvidenceLog.open(directory / row["folder"])
        else:
            raise FileNotFoundError(f"no evidence log in {directory} (no {PLATFORMS})")
        if (directory / PUBLIC_KEY).exists():
            logs.public_key = (directory / PUBLIC_KEY).read_text().strip()
        return logs

    def find(self, alert_id: str) -> EvidenceLog:
        """The tree that holds ``alert_id``'s entries."""
        for log in self.logs.values():
            if alert_id in log.by_alert:
                return log
        raise NotFound(alert_id)

    @property
    def entries(self) -> int:
        return sum(len(log.leaves) for log in self.logs.values())

    def close(self) -> None:
        for log in self.logs.values():
            log.close()
        if self._index is not None:
            self._index.close()
            self._index = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
