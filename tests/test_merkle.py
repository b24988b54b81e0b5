"""The Merkle tree and its proofs against a naive transcription of RFC 6962, plus published
test vectors (docs/audit-proofs.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from modelvault import merkle

DOCS = Path(__file__).resolve().parent.parent / "docs" / "audit-proofs.md"


def _mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 6962 2.1 writes it."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _from_ranges(ranges: list[merkle.Range], leaves: list[bytes]) -> list[bytes]:
    return [_mth(leaves[a:b]) for a, b in ranges]


def _via_nodes(ranges: list[merkle.Range], leaves: list[bytes]) -> list[bytes]:
    """The same hashes computed from perfect subtrees only, as the database holds them."""
    made: list[tuple[int, int, bytes]] = []
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.push(merkle.leaf_hash(leaf), made)
    nodes = {(lv, ix): h for lv, ix, h in made}
    return [merkle.range_hash(a, b, lambda lv, ix: nodes[(lv, ix)]) for a, b in ranges]


trees = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@given(trees)
def test_root_matches_the_rfc_definition(leaves: list[bytes]) -> None:
    hashed = [merkle.leaf_hash(x) for x in leaves]
    assert merkle.root_of(hashed) == _mth(leaves)
    assert _via_nodes([(0, len(leaves))], leaves) == [_mth(leaves)]


@given(trees, st.data())
def test_inclusion_proofs_match_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(0, n - 1))
    ranges = merkle.inclusion_ranges(m, n)
    proof = _via_nodes(ranges, leaves)
    assert proof == _from_ranges(ranges, leaves) == _path(m, leaves)
    root = _mth(leaves)
    leaf = merkle.leaf_hash(leaves[m])
    assert merkle.verify_inclusion(leaf, m, n, proof, root)
    assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[m] + b"x"), m, n, proof, root)
    if n > 1:
        assert not merkle.verify_inclusion(leaf, (m + 1) % n, n, proof, root) or (
            leaves[(m + 1) % n] == leaves[m]
        )
        assert not merkle.verify_inclusion(leaf, m, n, proof[:-1], root)


@given(trees, st.data())
def test_consistency_proofs_match_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    ranges = merkle.consistency_ranges(m, n)
    proof = _via_nodes(ranges, leaves)
    assert proof == _from_ranges(ranges, leaves)
    if m < n:
        assert proof == _subproof(m, leaves, True)
    old_root, new_root = _mth(leaves[:m]), _mth(leaves)
    assert merkle.verify_consistency(m, n, proof, old_root, new_root)
    if m < n:
        forged = _mth([b"forged", *leaves[1:m]])
        assert not merkle.verify_consistency(m, n, proof, forged, new_root)
        assert not merkle.verify_consistency(m, n, proof, old_root, _mth([*leaves, b"x"]))


def test_published_vectors_hold() -> None:
    block = re.search(r"```json\n(.*?)\n```", DOCS.read_text(), re.S)
    assert block is not None, "docs/audit-proofs.md has no JSON block of vectors"
    vectors = json.loads(block.group(1))
    leaves = [bytes.fromhex(x) for x in vectors["leaves"]]
    hashed = [merkle.leaf_hash(x) for x in leaves]
    assert [h.hex() for h in hashed] == vectors["leaf_hashes"]
    for size, root in vectors["roots"].items():
        assert merkle.root_of(hashed[: int(size)]).hex() == root
    for case in vectors["inclusion"]:
        ranges = merkle.inclusion_ranges(case["index"], case["tree_size"])
        proof = _via_nodes(ranges, leaves[: case["tree_size"]])
        assert [p.hex() for p in proof] == case["path"]
    for case in vectors["consistency"]:
        ranges = merkle.consistency_ranges(case["old"], case["new"])
        proof = _via_nodes(ranges, leaves[: case["new"]])
        assert [p.hex() for p in proof] == case["path"]
    # the eight-leaf root of the certificate-transparency reference tests
    assert vectors["roots"]["8"] == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
