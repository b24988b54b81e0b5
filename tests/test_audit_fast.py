"""The fast paths of the audit log: proofs in one statement, and `audit verify` reading raw
rows, hashing spliced event bodies and splitting the log between processes, with the same
verdicts as the event-by-event walk."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from modelvault import Registry, auditscan, merkle
from modelvault.audit import EventDraft, append_batch
from modelvault.eventhash import event_hash
from modelvault.service import transparency
from modelvault.service.transparency import verify_all

from .backends import raw_db
from .conftest import write_model

SRC = Path(__file__).resolve().parent.parent / "src"


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


# -- audit verify: the spliced hash, and ranges in parallel -----------------------------------

PAYLOADS: list[dict[str, Any] | None] = [
    None,
    {},
    {"name": "modèle-漢字-🎉", "quote": '"\\/', "ctl": "\x00\x01\x1f\x7f\u2028\n\t\r\b\f"},
    {"nested": {"z": [1, 2.5, -0.0, 1e-07, 1e21, True, False, None], "a": {"b": {"c": []}}}},
    {"big": 2**70, "neg": -(2**63), "float": 0.1, "tiny": 5e-324, "keys": {"é": 1, "e": 2}},
    {"surrogate-free but astral": "\U0001f600", "ascii": "plain"},
]


def _drafts() -> list[EventDraft]:
    out = []
    for i, payload in enumerate(PAYLOADS):
        out.append(
            EventDraft(
                f"test.action{i}",
                f"subject ünïcode \x01 {i}",
                project=None if i % 2 else "default",
                model=None if i % 3 else "m-\u00e9",
                before=payload,
                after=PAYLOADS[-1 - i],
                reason=None if i % 2 else 'why: "quoted" \\ \n 理由',
            )
        )
    return out


def _append_clear(db: Connection, actor: str, after_text: str | None) -> None:
    """Append a scheme-1 event (hashed over the clear actor) by hand, as old logs hold."""
    seq, prev = db.execute(text("SELECT seq, hash FROM mv_audit_head")).one()
    fields = {
        "seq": seq + 1,
        "ts": "2026-01-01T09:00:00.000000Z",
        "actor": actor,
        "action": "note.add",
        "project": "default",
        "model": None,
        "subject": f"note:{seq + 1}",
        "before": None,
        "after": json.loads(after_text) if after_text is not None else None,
        "reason": None,
    }
    digest = event_hash(**fields, prev_hash=prev)  # type: ignore[arg-type]
    db.execute(
        text(
            "INSERT INTO mv_audit_events (seq, ts, actor, action, project, model, subject,"
            " before, after, reason, prev_hash, hash, scheme) VALUES (:seq, :ts, :actor,"
            " :action, :project, :model, :subject, NULL, :after, NULL, :prev, :hash, 1)"
        ),
        {**fields, "after": after_text, "prev": prev, "hash": digest},
    )
    db.execute(text("UPDATE mv_audit_head SET seq = :s, hash = :h"), {"s": seq + 1, "h": digest})


def _no_walk(*args: Any) -> Any:
    raise AssertionError("the fast check fell back to the event-by-event walk")


def _verdict(reg: Registry, **options: Any) -> tuple[Any, ...]:
    r = verify_all(reg._ctx, **options)
    return (r.ok, r.events, r.first_bad_seq, r.check, r.problem, r.checkpoints)


def test_spliced_bodies_hash_like_event_hash(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reg._ctx.store.write() as conn:
        append_batch(conn, _drafts(), actor='ä "b" \x01', at=reg._ctx.now())
    with raw_db(reg) as db:
        _append_clear(db, "bob ü", '{"a":{"b":[1,"\\u0000é"]},"z":null}')
        _append_clear(db, "carol", None)
    with reg._ctx.store.write() as conn:
        append_batch(conn, _drafts()[:2], actor="dave", at=reg._ctx.now())
    reg.checkpoint()
    reference = _verdict(reg, reference=True)
    assert reference[0] and reference[1] == len(PAYLOADS) + 4

    def never(row: tuple[Any, ...]) -> bool:
        raise AssertionError(f"event {row[0]} needed the slow path")

    # every event here is canonical: the spliced body alone must match each hash
    monkeypatch.setattr(auditscan, "_slow_fits", never)
    monkeypatch.setattr(transparency, "_walk", _no_walk)
    assert _verdict(reg, processes=1) == reference


def test_non_canonical_stored_text_gets_the_walk_s_verdict(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reg._ctx.store.write() as conn:
        append_batch(conn, _drafts(), actor="alice", at=reg._ctx.now())
    with raw_db(reg) as db:
        # the same JSON written another way: the hash (over the canonical form) still holds
        _append_clear(db, "bob", '{ "b" : [1, 2.50],\n "a": "\\u00e9" }')
    reg.checkpoint()
    reference = _verdict(reg, reference=True)
    assert reference[0]
    with monkeypatch.context() as patch:
        patch.setattr(transparency, "_walk", _no_walk)
        assert _verdict(reg, processes=1) == reference
    with raw_db(reg) as db:
        # a forger hashes the stored text as it is, not its canonical form: the walk refuses
        # it, so the spliced body (which would match) must not be taken at its word
        row = db.execute(text("SELECT * FROM mv_audit_events WHERE seq = 3")).mappings().one()
        after = '{"version": 1}'
        fields = {k: row[k] for k in ("seq", "ts", "action", "project", "model", "subject")}
        fields |= {k: row[k] for k in ("reason", "prev_hash", "scheme", "actor_commitment")}
        fields["before"] = json.loads(row["before"]) if row["before"] is not None else None
        fields["after"] = "@after@"
        body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        body = body.replace('"@after@"', after)
        forged = hashlib.sha256(body.encode()).hexdigest()
        db.execute(
            text("UPDATE mv_audit_events SET after = :a, hash = :h WHERE seq = 3"),
            {"a": after, "h": forged},
        )
        assert auditscan._canonical_text(after) is False
    reference = _verdict(reg, reference=True)
    assert reference[:4] == (False, 2, 3, "chain") and "altered" in str(reference[4])
    monkeypatch.setattr(transparency, "_walk", _no_walk)
    assert _verdict(reg, processes=1) == reference


BIG = 9_000  # three blocks of 4,096 leaves: two ranges, the second from event 8,193


@pytest.fixture
def big(reg: Registry) -> Registry:
    draft = EventDraft("x.y", "s", project="default", model="m", after={"n": 1, "t": "é"})
    for done in range(0, BIG, 1_000):
        with reg._ctx.store.write() as conn:
            append_batch(conn, [draft] * 1_000, actor="eve", at=reg._ctx.now())
        if done + 1_000 in (5_000, BIG):  # checkpoints inside a block and at the end
            assert reg.checkpoint() is not None
    return reg


TAMPERS = {
    "none": ([], None, None),
    "payload": (["UPDATE mv_audit_events SET after = '[2]' WHERE seq = 8500"], 8500, "chain"),
    "link at the second range": (
        ["UPDATE mv_audit_events SET prev_hash = hash WHERE seq = 8193"],
        8193,
        "chain",
    ),
    "deleted": (["DELETE FROM mv_audit_events WHERE seq = 8999"], 8999, "chain"),
    "tree leaf": (
        [f"UPDATE mv_audit_tree SET hash = '{'a' * 64}' WHERE level = 0 AND idx = 8600"],
        8601,
        "tree",
    ),
    "clear actor": (
        ["UPDATE mv_audit_personal SET actor = 'mallory' WHERE seq = 8700"],
        8700,
        "personal",
    ),
    "erased actor": (["DELETE FROM mv_audit_personal WHERE seq = 8800"], 8800, "personal"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_parallel_ranges_give_the_walk_s_verdict(
    big: Registry, tamper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements, seq, check = TAMPERS[tamper]
    with raw_db(big) as db:
        for statement in statements:
            db.execute(text(statement))
    reference = _verdict(big, reference=True)
    assert reference[0] is (seq is None)
    assert reference[2:4] == (seq, check)
    monkeypatch.setattr(transparency, "_walk", _no_walk)
    assert _verdict(big, processes=1) == reference
    assert _verdict(big, processes=2) == reference


def test_workers_do_not_run_the_caller_s_script_again(big: Registry, tmp_path: Path) -> None:
    # a script without the `if __name__ == "__main__"` guard: multiprocessing's spawn would
    # run it again in each worker (registering, appending... twice); the workers must not
    marks = tmp_path / "marks"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(SRC)!r})\n"
        "from pathlib import Path\n"
        "from modelvault import Registry, Settings\n"
        "from modelvault.service.transparency import verify_all\n"
        f"with open({str(marks)!r}, 'a') as fh:\n"
        "    fh.write('ran\\n')\n"
        f"settings = Settings.from_env(env={{'MODELVAULT_DB': {big.settings.db!r}}},"
        f" home=Path({str(big.settings.home)!r}), actor='x')\n"
        "result = verify_all(Registry(settings=settings)._ctx, processes=2)\n"
        "print(result.ok, result.events)\n"
    )
    # the script finds modelvault by its own sys.path, which its workers must use too
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", str(BIG)]
    assert "worker failed" not in done.stderr
    assert marks.read_text() == "ran\n"
