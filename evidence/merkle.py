"""Merkle tree hashing as Certificate Transparency does it (RFC 6962 / RFC 9162 section 2.1).

Why this shape: a prosecutor's tool can check that one evidence entry is in a signed log
(an inclusion proof: log2(n) hashes) and that a later log still contains an earlier one
unchanged (a consistency proof), without trusting Stormwatch or seeing the other entries.

* leaf hash = SHA-256(0x00 || entry bytes), node hash = SHA-256(0x01 || left || right);
* the tree over n leaves splits at k, the largest power of two smaller than n (2.1.1);
* ``inclusion_proof`` and ``consistency_proof`` are PATH and PROOF of 2.1.3.1 and 2.1.4.1,
  written as the RFC defines them; ``verify_inclusion`` and ``verify_consistency`` are the
  RFC's verification algorithms (2.1.3.2 and 2.1.4.2), step by step.

:class:`MerkleTree` keeps every complete aligned subtree's hash (at most 2n hashes), so
appending a leaf, the root and each proof cost O(log n) or O(log^2 n) hashes, not O(n).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256()


def _split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes with the RFC's root and proofs."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        # levels[h][i] = hash of the complete subtree of 2**h leaves starting at leaf i * 2**h
        self.levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self.levels[0])

    def append(self, data: bytes) -> int:
        """Add one entry; returns its leaf index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        index = len(self.levels[0])
        self.levels[0].append(h)
        level = 0
        while len(self.levels[level]) % 2 == 0:  # a subtree of 2**(level+1) leaves just completed
            if len(self.levels) == level + 1:
                self.levels.append([])
            self.levels[level + 1].append(node_hash(self.levels[level][-2], self.levels[level][-1]))
            level += 1
        return index

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) (2.1.1), from stored complete subtrees where it can."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:  # complete and aligned: stored
            return self.levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        return self.subtree(0, len(self) if size is None else size)

    def inclusion_proof(self, m: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[0:size]) of 2.1.3.1: the audit path of leaf m."""
        size = len(self) if size is None else size
        if not 0 <= m < size <= len(self):
            raise ValueError(f"no leaf {m} in a tree of {size}")

        def path(m: int, lo: int, hi: int) -> list[bytes]:
            n = hi - lo
            if n == 1:
                return []
            k = _split(n)
            if m < k:
                return path(m, lo, lo + k) + [self.subtree(lo + k, hi)]
            return path(m - k, lo + k, hi) + [self.subtree(lo, lo + k)]

        return path(m, 0, size)

    def consistency_proof(self, m: int, size: int | None = None) -> list[bytes]:
        """PROOF(m, D[0:size]) of 2.1.4.1: the earlier tree of m leaves is a prefix of this one."""
        size = len(self) if size is None else size
        if not 0 < m <= size <= len(self):
            raise ValueError(f"no consistency proof from {m} to {size}")

        def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
            n = hi - lo
            if m == n:
                return [] if complete else [self.subtree(lo, hi)]
            k = _split(n)
            if m <= k:
                return subproof(m, lo, lo + k, complete) + [self.subtree(lo + k, hi)]
            return subproof(m - k, lo + k, hi, False) + [self.subtree(lo, lo + k)]

        return subproof(m, 0, size, True)


def verify_inclusion(leaf_index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` lead from the leaf hash to ``root``?"""
    if leaf_index >= tree_size:  # 1
        return False
    fn, sn = leaf_index, tree_size - 1  # 2
    r = leaf  # 3
    for p in proof:  # 4
        if sn == 0:  # 4.1
            return False
        if fn & 1 or fn == sn:  # 4.2
            r = node_hash(p, r)  # 4.2.1
            if not fn & 1:  # 4.2.2
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)  # 4.3 (otherwise)
        fn >>= 1  # 4.4
        sn >>= 1
    return sn == 0 and r == root  # 5


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree of ``first`` leaves a prefix of the one of ``second``?"""
    if first > second:
        return False
    if first == second:  # the RFC's proof for equal sizes is empty, and the roots must agree
        return not proof and first_hash == second_hash
    if first == 0 or not proof:  # 1 (and an empty proof proves nothing for first < second)
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # 2: first is an exact power of two
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # 3
    if fn & 1:  # 4
        while fn & 1:
            fn >>= 1
            sn >>= 1
    fr = sr = path[0]  # 5
    for c in path[1:]:  # 6
        if sn == 0:  # 6.1
            return False
        if fn & 1 or fn == sn:  # 6.2
            fr = node_hash(c, fr)  # 6.2.1
            sr = node_hash(c, sr)
            if not fn & 1:  # 6.2.2
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)  # 6.3 (otherwise)
        fn >>= 1  # 6.4
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0  # 7
