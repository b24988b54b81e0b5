"""Signed checkpoints, the witness, proofs, tamper detection beyond the chain, and the offline
bundle (`python -m modelvault.verify`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from modelvault import InvalidInput, Registry, merkle
from modelvault import checkpoints as cps
from modelvault.eventhash import event_hash
from modelvault.verify import BundleError, verify_bundle

from .backends import raw_db
from .conftest import FakeClock, write_model

SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture
def log(reg: Registry, as_user: Callable[[str], Registry], tmp_path: Path) -> Registry:
    """Nine events, a checkpoint, six more events and a second checkpoint."""
    bob = as_user("bob")
    for i in range(1, 4):
        reg.register("fraud", write_model(tmp_path, f"v{i}", b"w%d" % i), capture_environment=False)
    reg.promote("fraud:1", "staging")
    bob.approve("fraud:1", comment="ok")
    reg.promote("fraud:1", "production", reason="launch")
    reg.set_alias("fraud", "champion", "1")
    assert reg.checkpoint() is not None
    reg.promote("fraud:2", "staging")
    bob.approve("fraud:2")
    reg.promote("fraud:2", "production", reason="better")
    reg.rollback("fraud", reason="regressed")
    reg.set_alias("fraud", "champion", "2")
    reg.set_alias("fraud", "candidate", "3")
    assert reg.checkpoint() is not None
    return reg


def _broken(reg: Registry, check: str, seq: int | None = None) -> str:
    result = reg.verify_audit()
    assert not result.ok
    assert result.check == check, result.problem
    if seq is not None:
        assert result.first_bad_seq == seq, result.problem
    return result.problem or ""


def test_checkpoints_are_signed_witnessed_and_prove_every_event(log: Registry) -> None:
    result = log.verify_audit()
    assert result.ok and result.checkpoints == 2 and result.check is None
    key = cps.load_public(log.audit_public_key())
    stored = log.checkpoints()
    first, last = (c["tree_size"] for c in stored)
    assert last - first == 6
    witness = cps.witness_read(Path(log.settings.audit_witness))
    assert [c.to_json() for c in witness] == stored
    assert all(cps.signature_ok(key, c) for c in witness)
    events = log.audit()
    for e in events:
        proof = log.inclusion_proof(e.seq)
        leaf = merkle.leaf_hash(bytes.fromhex(e.hash))
        path = [bytes.fromhex(p) for p in proof["path"]]
        root = bytes.fromhex(proof["checkpoint"]["root"])
        assert merkle.verify_inclusion(leaf, e.seq - 1, last, path, root)
        assert not merkle.verify_inclusion(leaf, e.seq % last, last, path, root)
    with pytest.raises(InvalidInput, match="checkpoint sizes"):
        log.consistency_proof(last, first)
    early = log.inclusion_proof(3, tree_size=first)
    assert early["tree_size"] == first
    link = log.consistency_proof(first, last)
    assert merkle.verify_consistency(
        first,
        last,
        [bytes.fromhex(p) for p in link["path"]],
        bytes.fromhex(link["old"]["root"]),
        bytes.fromhex(link["new"]["root"]),
    )


def test_checkpoints_are_made_every_n_events_on_their_own(
    settings: object, clock: FakeClock, tmp_path: Path
) -> None:
    every4 = replace(settings, checkpoint_every="4")  # type: ignore[type-var]
    reg = Registry(settings=every4, clock=clock)
    try:
        for i in range(5):
            reg.register("m", write_model(tmp_path, f"m{i}", b"%d" % i), capture_environment=False)
        # events: project.create, model.create, then one per registration: 7 in all
        assert [c["tree_size"] for c in reg.checkpoints()] == [4]
        reg.set_alias("m", "a", "1")
        assert [c["tree_size"] for c in reg.checkpoints()] == [4, 8]
        assert reg.verify_audit().ok
    finally:
        reg.close()


def test_the_checkpoint_check_after_a_write_reads_nothing(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the write tells the check which audit head it left: one read fewer per state change
    store = reg._ctx.store
    reg.register("m", write_model(tmp_path, "m0", b"0"), capture_environment=False)
    reads: list[object] = []
    plain_read = store.read

    def counted(**kwargs: Any) -> Any:
        reads.append(kwargs)
        return plain_read(**kwargs)

    monkeypatch.setattr(store, "read", counted)
    for i in range(1, 4):
        reg.register("m", write_model(tmp_path, f"m{i}", b"%d" % i), capture_environment=False)
    assert reads == []
    monkeypatch.undo()
    assert reg.checkpoint() is not None  # and the check still knows where the log is
    assert reg.verify_audit().ok


def test_a_rewritten_and_rehashed_chain_disagrees_with_the_signed_checkpoints(
    log: Registry,
) -> None:
    # an administrator edits event 6 and recomputes every later hash and the head: the chain
    # alone verifies, the signed checkpoints do not
    with raw_db(log) as db:
        rows = db.execute(text("SELECT * FROM mv_audit_events ORDER BY seq")).mappings().all()
        prev = "0" * 64
        for row in rows:
            fields = dict(row)
            if fields["seq"] == 6:
                fields["reason"] = "mallory was here"
            for k in ("before", "after"):
                fields[k] = json.loads(fields[k]) if fields[k] is not None else None
            digest = event_hash(
                **{k: fields[k] for k in fields if k not in ("hash", "prev_hash")}, prev_hash=prev
            )
            db.execute(
                text("UPDATE mv_audit_events SET reason=:r, prev_hash=:p, hash=:h WHERE seq=:s"),
                {"r": fields["reason"], "p": prev, "h": digest, "s": fields["seq"]},
            )
            prev = digest
        db.execute(text("UPDATE mv_audit_head SET hash = :h"), {"h": prev})
        # and rebuilds the tree so that its leaves match again
        db.execute(text("DELETE FROM mv_audit_tree"))
    # the tree is refilled from the rewritten events at the next checkpoint attempt; even then
    # the old signatures cover other roots
    problem = _broken(log, "tree", 1)
    first = log.checkpoints()[0]["tree_size"]
    assert f"checkpoint {first} does not match the log" in problem


def test_checkpoints_re_signed_with_another_key_are_refused(log: Registry, tmp_path: Path) -> None:
    other = cps.load_or_create_private(tmp_path / "other.pem")
    with raw_db(log) as db:
        for row in db.execute(text("SELECT * FROM mv_audit_checkpoints")).mappings().all():
            forged = cps.sign(other, row["tree_size"], row["root"], row["ts"])
            db.execute(
                text("UPDATE mv_audit_checkpoints SET signature=:s, key_id=:k WHERE tree_size=:t"),
                {"s": forged.signature, "k": forged.key_id, "t": row["tree_size"]},
            )
    assert "not signed by this log's key" in _broken(log, "signature")


def test_a_deleted_checkpoint_is_still_held_by_the_witness(log: Registry) -> None:
    with raw_db(log) as db:
        db.execute(text("DELETE FROM mv_audit_events WHERE seq > 12"))
        db.execute(
            text("DELETE FROM mv_audit_checkpoints WHERE tree_size = :t"),
            {"t": log.checkpoints()[-1]["tree_size"]},
        )
        db.execute(text("DELETE FROM mv_audit_tree"))
        last = db.execute(text("SELECT hash FROM mv_audit_events WHERE seq = 12")).scalar()
        db.execute(text("UPDATE mv_audit_head SET seq = 12, hash = :h"), {"h": last})
    problem = _broken(log, "witness", 13)
    assert "removed from the end" in problem


def test_a_truncated_tail_with_its_head_moved_back_is_caught(log: Registry) -> None:
    with raw_db(log) as db:
        db.execute(text("DELETE FROM mv_audit_events WHERE seq > 10"))
        last = db.execute(text("SELECT hash FROM mv_audit_events WHERE seq = 10")).scalar()
        db.execute(text("UPDATE mv_audit_head SET seq = 10, hash = :h"), {"h": last})
    problem = _broken(log, "tree", 11)
    assert "removed from the end" in problem


def test_a_tampered_tree_leaf_names_its_event(log: Registry) -> None:
    with raw_db(log) as db:
        db.execute(
            text("UPDATE mv_audit_tree SET hash = :h WHERE level = 0 AND idx = 4"), {"h": "a" * 64}
        )
    _broken(log, "tree", 5)


def test_a_missing_signing_key_is_reported(log: Registry) -> None:
    Path(log.settings.audit_key).unlink()
    assert "cannot check checkpoint signatures" in _broken(log, "signature")


def test_clock_skew_is_stored_faithfully_and_sequence_rules(
    reg: Registry, clock: FakeClock, tmp_path: Path
) -> None:
    reg.register("m", write_model(tmp_path, "a", b"a"), capture_environment=False)
    clock.advance(hours=-5)  # the clock jumps back
    reg.set_alias("m", "x", "1")
    events = reg.audit()
    assert events[-1].ts < events[-2].ts
    reg.checkpoint()
    assert reg.verify_audit().ok


def test_bundle_verifies_offline_and_a_one_byte_change_fails(log: Registry, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    summary = log.export_audit(out, model="fraud")
    count = len(log.audit(model="fraud"))
    assert summary["events"] == count < len(log.audit())
    assert f"verified: {count} events" in verify_bundle(out)
    trusted = log.audit_public_key()
    verify_bundle(out, trusted)
    with pytest.raises(BundleError, match="another key"):
        verify_bundle(
            out, cps.public_pem(cps.load_or_create_private(tmp_path / "k.pem").public_key())
        )
    for name in ("events.jsonl", "checkpoints.jsonl"):
        copy = tmp_path / f"bad-{name}"
        shutil.copytree(out, copy)
        data = bytearray((copy / name).read_bytes())
        at = (
            data.index(b'"actor": "') + 10
            if name == "events.jsonl"
            else data.index(b'"root": "') + 9
        )
        data[at] = ord("0") if data[at] != ord("0") else ord("1")
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(BundleError):
            verify_bundle(copy)


def test_export_refuses_a_used_directory(log: Registry, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(Exception, match="not an empty directory"):
        log.export_audit(tmp_path / "used")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bundle_verifies_in_a_bare_environment_with_only_cryptography(
    log: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    log.export_audit(out)
    env_dir = tmp_path / "bare"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "cryptography"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    pkg = tmp_path / "pkg"
    shutil.copytree(
        SRC / "modelvault", pkg / "modelvault", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    bare = subprocess.run(
        [python, "-c", "import sqlalchemy"],
        cwd=pkg,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bare.returncode != 0  # nothing but cryptography (and its own needs) is installed
    ok = subprocess.run(
        [python, "-m", "modelvault.verify", str(out)],
        cwd=pkg,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("verified: ")
    events = out / "events.jsonl"
    data = bytearray(events.read_bytes())
    data[data.index(b'"subject": "') + 12] ^= 1
    events.write_bytes(bytes(data))
    bad = subprocess.run(
        [python, "-m", "modelvault.verify", str(out)],
        cwd=pkg,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 1
    assert "FAILED" in bad.stderr and "Traceback" not in bad.stderr
    assert sys.executable != str(python)


def test_cli_checkpoint_proof_export_and_verify(cli: object, tmp_path: Path) -> None:
    run = cli.run  # type: ignore[attr-defined]
    assert run("register", "m", str(write_model(tmp_path, "a", b"a")))[0] == 0
    code, _, err = run("audit", "checkpoint")
    assert code == 0 and "checkpoint: 3 events" in " ".join(err.split())
    code, out, _ = run("audit", "proof", "2")
    assert code == 0 and json.loads(out)["tree_size"] == 3
    code, out, _ = run("audit", "public-key")
    assert out.startswith("-----BEGIN PUBLIC KEY-----")
    code, _, err = run("audit", "export", "--out", str(tmp_path / "b"))
    assert code == 0 and "python -m modelvault.verify" in " ".join(err.split())
    code, _, err = run("audit", "verify")
    assert code == 0 and "1 signed checkpoints" in " ".join(err.split())
    code, _, err = run("audit", "proof", "99")
    assert code != 0 and "Traceback" not in err
    assert "no checkpoint covers event 99" in " ".join(err.split())


def test_a_batch_of_appends_chains_like_single_appends(reg: Registry, tmp_path: Path) -> None:
    from modelvault.audit import EventDraft, append_batch

    reg.register("m", write_model(tmp_path, "a", b"a"), capture_environment=False)
    ctx = reg._ctx
    drafts = [EventDraft("test.bulk", f"default/m:{i}", project="default") for i in range(3)]
    with ctx.store.write() as conn:
        seq, head = append_batch(conn, drafts, actor="importer", at=ctx.now())
    events = reg.audit()
    assert [e.seq for e in events] == list(range(1, seq + 1)) and events[-1].hash == head
    assert [e.subject for e in events[-3:]] == [d.subject for d in drafts]
    reg.checkpoint()
    assert reg.verify_audit().ok


def test_a_witness_write_cut_short_leaves_no_checkpoint_file(
    log: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the write of a witness file fails after the file was created (a kill, a full disk):
    # no partial checkpoint file may remain for verification to trip over
    log.register("fraud", write_model(tmp_path, "late", b"late"), capture_environment=False)
    real = os.fdopen

    def broken(*args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cps.os, "fdopen", broken)
    with pytest.raises(InvalidInput, match="cannot write to the audit witness"):
        log.checkpoint()
    monkeypatch.setattr(cps.os, "fdopen", real)
    witness = Path(log.settings.audit_witness)
    assert all(p.stat().st_size > 0 for p in witness.iterdir())
    assert log.verify_audit().ok  # the failed checkpoint left nothing behind
    assert log.checkpoint() is not None and log.verify_audit().checkpoints == 3
