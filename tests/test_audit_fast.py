"""The fast paths of the audit log: proofs in one statement, and `audit verify` reading raw
rows, hashing spliced event bodies and splitting the log between processes, with the same
verdicts as the event-by-event walk."""

from __future__ import annotations

from pathlib import Path

from modelvault import Registry, merkle

from .conftest import write_model


def _proves(reg: Registry, seq: int, proof: dict[str, object]) -> bool:
    cp = proof["checkpoint"]
    assert isinstance(cp, dict) and isinstance(proof["path"], list)
    leaf = merkle.leaf_hash(bytes.fromhex(str(proof["event_hash"])))
    path = [bytes.fromhex(p) for p in proof["path"]]
    size = int(str(proof["tree_size"]))
    return merkle.verify_inclusion(leaf, seq - 1, size, path, bytes.fromhex(cp["root"]))


def test_a_proof_follows_a_checkpoint_newer_than_the_one_it_last_used(
    reg: Registry, tmp_path: Path
) -> None:
    for i in range(1, 4):
        reg.register("fraud", write_model(tmp_path, f"v{i}", b"w%d" % i), capture_environment=False)
    first = reg.checkpoint()
    assert first is not None
    old = reg.inclusion_proof(2)
    assert old["tree_size"] == first["tree_size"] and _proves(reg, 2, old)
    for i in range(4, 9):
        reg.register("fraud", write_model(tmp_path, f"v{i}", b"w%d" % i), capture_environment=False)
    second = reg.checkpoint()
    assert second is not None and second["tree_size"] > first["tree_size"]
    # the nodes read with the guessed (old) size do not serve the newer checkpoint
    new = reg.inclusion_proof(2)
    assert new["tree_size"] == second["tree_size"] and new["checkpoint"] == second
    assert _proves(reg, 2, new) and new["path"] != old["path"]
    # and a proof against the older checkpoint, by its size, still holds
    again = reg.inclusion_proof(2, tree_size=first["tree_size"])
    assert again == old
    last = reg.inclusion_proof(second["tree_size"])
    assert _proves(reg, second["tree_size"], last)
