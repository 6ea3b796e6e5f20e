"""The append-only evidence log in a directory, and its signed tree heads.

Files (all append-only; a log directory holds exactly one tree):

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
TREE_HEADS = "tree-heads.jsonl"
PUBLIC_KEY = "public-key"
STH_FORMAT = "stormwatch-sth-v1\n{tree_size}\n{timestamp}\n{root_hash}\n"


def sth_message(tree_size: int, timestamp: str, root_hash: str) -> bytes:
    """The exact bytes an STH signature covers (documented in every bundle's manifest)."""
    return STH_FORMAT.format(tree_size=tree_size, timestamp=timestamp, root_hash=root_hash).encode()


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
        size = len(self.leaves)
        ts, root = format_ts(timestamp), self.tree.root().hex()
        # keys in sorted order, as read back from disk: a bundle from memory equals one from the folder
        head = {"root_hash": root, "signature": base64.b64encode(self.key.sign(sth_message(size, ts, root))).decode(),
                "timestamp": ts, "tree_size": size}
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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
