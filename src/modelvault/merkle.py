"""The audit log as a Merkle tree in the style of RFC 6962 / RFC 9162 (standard library only).

Leaf ``i`` is the audit event with sequence number ``i + 1``; its leaf hash is
``SHA-256(0x00 || event hash bytes)`` and an inner node is ``SHA-256(0x01 || left || right)``,
so a leaf can never be passed off as a node. The tree of ``n`` leaves splits at the largest
power of two below ``n``, exactly as in RFC 9162 section 2.1.1.

Proofs are described first as *ranges* of leaves (``[start, end)``) whose subtree hashes form
the proof, so the same algorithm serves a list of leaves in memory and the perfect subtrees
stored in the database. ``verify_inclusion`` and ``verify_consistency`` are the verification
algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2. This module is imported by the offline
verifier, so it must not import anything beyond the standard library.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

Range = tuple[int, int]
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than *n* (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def is_perfect(start: int, end: int) -> bool:
    size = end - start
    return size > 0 and size & (size - 1) == 0 and start % size == 0


def perfect_node(start: int, end: int) -> tuple[int, int]:
    """(level, index) of the aligned perfect subtree covering [start, end)."""
    level = (end - start).bit_length() - 1
    return level, start >> level


def decompose(start: int, end: int) -> list[Range]:
    """The perfect subtrees whose hashes make up MTH(leaves[start:end]), left to right.

    Valid for every range a proof or a root uses: its left part is always aligned."""
    out: list[Range] = []
    while end - start > 0:
        if is_perfect(start, end):
            out.append((start, end))
            break
        k = split_point(end - start)
        out.append((start, start + k))
        start += k
    return out


def range_hash(start: int, end: int, node: Callable[[int, int], bytes]) -> bytes:
    """MTH(leaves[start:end]) from ``node(level, index)``, the hash of a perfect subtree."""
    parts = [node(*perfect_node(a, b)) for a, b in decompose(start, end)]
    if not parts:
        return EMPTY_ROOT
    result = parts[-1]
    for part in reversed(parts[:-1]):
        result = node_hash(part, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form PATH(index, D[0:size]), deepest first (RFC 6962 2.1.1)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The ranges whose hashes form PROOF(old, D[0:new]) (RFC 6962 2.1.2)."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    out: list[Range] = []
    m, start, end, complete = old, 0, new, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                out.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            m -= k
            start += k
            complete = False
    out.reverse()
    return out


class Frontier:
    """Appends leaf hashes one by one, keeping the perfect subtrees of the right edge, so the
    root of every prefix is at hand in O(log n) and each completed inner node is reported."""

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        """Resume a tree of *size* leaves from its perfect subtrees, left to right."""
        self.size = size
        levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        if len(levels) != len(nodes):
            raise ValueError("the frontier does not match the tree size")
        self._stack: list[tuple[int, bytes]] = list(zip(levels, nodes, strict=True))

    @staticmethod
    def nodes_for(size: int) -> list[tuple[int, int]]:
        """(level, index) of the perfect subtrees that make up a tree of *size* leaves."""
        out, start = [], 0
        for b in range(size.bit_length() - 1, -1, -1):
            if size >> b & 1:
                out.append((b, start >> b))
                start += 1 << b
        return out

    def push(self, leaf: bytes, made: list[tuple[int, int, bytes]] | None = None) -> None:
        """Add one leaf hash; append every completed node (level, index, hash) to *made*."""
        index = self.size
        self.size += 1
        level, current = 0, leaf
        if made is not None:
            made.append((0, index, leaf))
        stack = self._stack
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            current = node_hash(left, current)
            level += 1
            if made is not None:
                made.append((level, index >> level, current))
        stack.append((level, current))

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1][1]
        for _, part in reversed(self._stack[:-1]):
            result = node_hash(part, result)
        return result


def root_of(leaves: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.push(leaf)
    return frontier.root()


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: is *leaf* (a leaf hash) at *index* in the tree of *size* with *root*?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, path: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of size *old* with *old_root* a prefix of the tree of size
    *new* with *new_root*?"""
    if old == new:
        return not path and old_root == new_root
    if not 0 < old < new or not path:
        return False
    proof = list(path)
    if old & (old - 1) == 0:
        proof.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
