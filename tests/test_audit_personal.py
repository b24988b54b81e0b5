"""Personal data in the audit log: new events hash a commitment to their actor, the clear
name lives apart and can be erased; after erasure the chain, tree, checkpoints, witness and
offline bundle still verify, queries show erased:..., and tampering with the clear names or
removing them without an erase event is caught. Events from before keep their format."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from modelvault import InvalidInput, NotFound, Registry
from modelvault.eventhash import commit_actor, event_hash
from modelvault.verify import BundleError, verify_bundle

from .backends import raw_db
from .conftest import write_model

Opener = Callable[[str], Registry]


@pytest.fixture
def team(reg: Registry, as_user: Opener, tmp_path: Path) -> Registry:
    """alice registers and promotes; bob approves twice; a checkpoint in between."""
    bob = as_user("bob")
    for i in (1, 2):
        reg.register("fraud", write_model(tmp_path, f"v{i}", b"w%d" % i), capture_environment=False)
    reg.promote("fraud:1", "staging")
    bob.approve("fraud:1", comment="ok")
    reg.promote("fraud:1", "production", reason="launch")
    assert reg.checkpoint() is not None
    reg.promote("fraud:2", "staging")
    bob.approve("fraud:2", comment="better")
    reg.promote("fraud:2", "production", reason="better")
    return reg


def test_new_events_hash_a_commitment_and_keep_the_name_apart(team: Registry) -> None:
    with raw_db(team) as db:
        rows = db.execute(text("SELECT * FROM mv_audit_events ORDER BY seq")).mappings().all()
        personal = {
            r["seq"]: r for r in db.execute(text("SELECT * FROM mv_audit_personal")).mappings()
        }
    for row in rows:
        assert row["scheme"] == 2 and row["actor"] == ""  # the name is not in the event
        clear = personal[row["seq"]]
        assert commit_actor(clear["salt"], clear["actor"]) == row["actor_commitment"]
        fields = {k: row[k] for k in row if k != "hash"}
        for k in ("before", "after"):
            fields[k] = json.loads(fields[k]) if fields[k] is not None else None
        assert event_hash(**fields) == row["hash"]
    # a fresh salt per event: the same actor never gives the same commitment twice
    assert len({r["actor_commitment"] for r in rows}) == len(rows)
    events = team.audit()
    assert {e.actor for e in events} == {"alice", "bob"}
    # a payload naming the actor hashes a mark in its place, and reads show the name
    approve = team.audit(action="version.approve")[0]
    assert approve.after is not None and approve.after["approver"] == "bob"
    assert rows[5]["action"] == "version.approve"
    assert json.loads(rows[5]["after"])["approver"] == "\u27e8actor\u27e9"
    assert all(e.actor_commitment for e in events)
    assert [e.seq for e in team.audit(actor="bob")] == [6, 9]


def test_erasure_keeps_every_proof_and_hides_the_name(team: Registry, tmp_path: Path) -> None:
    bob_events = [e.seq for e in team.audit(actor="bob")]
    with pytest.raises(InvalidInput, match="--reason"):
        team.erase_actor("bob", reason="")
    done = team.erase_actor("bob", reason="erasure request 2026-41")
    assert done["events"] == 2 and done["kept_in_clear"] == 0
    # the receipt lets the requester show which name the commitment stands for
    assert commit_actor(done["receipt_salt"], "bob") == done["actor_commitment"]
    erase = team.audit(action="audit.erase")[-1]
    assert erase.actor == "alice" and erase.reason == "erasure request 2026-41"
    assert erase.after is not None and erase.after["events"] == 2
    assert erase.after["seqs"] == [[6, 6], [9, 9]]
    with raw_db(team) as db:
        # the name is in none of bob's events (not as actor, not as the approver in their
        # payloads), nor in the erase event, and its personal rows are gone
        raw = db.execute(text("SELECT * FROM mv_audit_events")).mappings().all()
        mine = [dict(r) for r in raw if r["seq"] in (*bob_events, erase.seq)]
        assert len(mine) == 3 and "bob" not in json.dumps(mine)
        left = db.execute(text("SELECT actor FROM mv_audit_personal")).scalars().all()
    assert "bob" not in left
    assert team.audit(actor="bob") == []
    shown = {e.seq: e.actor for e in team.audit()}
    for seq in bob_events:
        assert shown[seq].startswith("erased:") and len(shown[seq]) == len("erased:") + 16
    team.checkpoint()
    result = team.verify_audit()
    assert result.ok and result.checkpoints == 2, result.problem
    # the incident report still answers, with its proofs
    report = team.explain("fraud@production")
    assert report["version"]["ref"] == "default/fraud:2"
    assert report["proofs"]["events"]
    # the bundle verifies offline; erased events carry no name and no salt
    out = tmp_path / "bundle"
    team.export_audit(out)
    assert verify_bundle(out).startswith("verified: ")
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    erased = [e for e in lines if e["seq"] in bob_events]
    assert all(e["actor_salt"] is None and e["actor"].startswith("erased:") for e in erased)
    # a clear name changed in the bundle no longer matches its commitment
    copy = tmp_path / "bad"
    shutil.copytree(out, copy)
    (copy / "events.jsonl").write_text(
        (out / "events.jsonl").read_text().replace('"actor": "alice"', '"actor": "carol"', 1)
    )
    with pytest.raises(BundleError, match="does not match its commitment"):
        verify_bundle(copy)
    with pytest.raises(NotFound, match="no audit event names 'bob'"):
        team.erase_actor("bob", reason="again")


def test_tampering_with_the_clear_names_is_caught(team: Registry) -> None:
    with raw_db(team) as db:
        db.execute(text("UPDATE mv_audit_personal SET actor = 'mallory' WHERE seq = 6"))
    result = team.verify_audit()
    assert not result.ok and result.check == "personal" and result.first_bad_seq == 6
    assert "does not match its commitment" in (result.problem or "")
    with raw_db(team) as db:
        db.execute(text("UPDATE mv_audit_personal SET actor = 'bob' WHERE seq = 6"))
    assert team.verify_audit().ok
    # a name removed behind the log's back, not by `audit erase`
    with raw_db(team) as db:
        db.execute(text("DELETE FROM mv_audit_personal WHERE seq = 4"))
    result = team.verify_audit()
    assert not result.ok and result.check == "personal" and result.first_bad_seq == 4
    assert "without an audit.erase event" in (result.problem or "")


def test_events_from_before_keep_their_format(reg: Registry, tmp_path: Path) -> None:
    """A log written before pseudonymization (migration 0015): its events stay hashed over
    the clear actor, new ones commit to it, and both verify, online and offline."""
    from alembic import command

    from modelvault.store import migrate

    with reg._ctx.store.migrating() as conn:
        command.upgrade(migrate._config(conn), "0014")
    prev = "0" * 64
    with raw_db(reg) as db:
        for seq, actor in ((1, "bob"), (2, "alice"), (3, "bob")):
            fields = {
                "seq": seq,
                "ts": f"2026-01-0{seq}T09:00:00.000000Z",
                "actor": actor,
                "action": "note.add",
                "project": "default",
                "model": None,
                "subject": f"note:{seq}",
                "before": None,
                "after": {"n": seq},
                "reason": None,
            }
            digest = event_hash(**fields, prev_hash=prev)  # type: ignore[arg-type]
            db.execute(
                text(
                    "INSERT INTO mv_audit_events (seq, ts, actor, action, project, model, "
                    "subject, before, after, reason, prev_hash, hash) VALUES (:seq, :ts, "
                    ":actor, :action, :project, :model, :subject, NULL, :after, NULL, :prev, "
                    ":hash)"
                ),
                {**fields, "after": json.dumps(fields["after"]), "prev": prev, "hash": digest},
            )
            prev = digest
        db.execute(text("UPDATE mv_audit_head SET seq = 3, hash = :h"), {"h": prev})
    reg.upgrade_schema()
    reg.register("fraud", write_model(tmp_path, "v1", b"w1"), capture_environment=False)
    events = reg.audit()
    assert [e.actor_commitment is None for e in events] == [True] * 3 + [False] * 3
    assert [e.seq for e in reg.audit(actor="bob")] == [1, 3]
    reg.checkpoint()
    assert reg.verify_audit().ok
    done = reg.erase_actor("alice", reason="request")
    assert done["events"] == 3 and done["kept_in_clear"] == 1  # event 2 names her in clear
    assert [e.actor for e in reg.audit()][:3] == ["bob", "alice", "bob"]
    reg.checkpoint()
    assert reg.verify_audit().ok
    out = tmp_path / "bundle"
    reg.export_audit(out)
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [line.get("scheme") for line in lines][:4] == [None, None, None, 2]
    assert verify_bundle(out).startswith("verified: 7 events")


def test_audit_erase_cli(cli: object, tmp_path: Path) -> None:
    run = cli.run  # type: ignore[attr-defined]
    assert run("register", "m", str(write_model(tmp_path, "a", b"a")), actor="bob")[0] == 0
    code, _, err = run("audit", "erase", "--actor", "bob")
    assert code == 2 and "Traceback" not in err
    code, _, err = run("audit", "erase", "--actor", "bob", "--reason", "request 7")
    assert code == 0 and "erased the name from 3 events" in " ".join(err.split())
    code, out, _ = run("audit", "list", "--json")
    assert "bob" not in out and "erased:" in out
    code, _, err = run("audit", "erase", "--actor", "bob", "--reason", "again")
    assert code == 3 and "no audit event names 'bob'" in " ".join(err.split())
    assert run("audit", "verify")[0] == 0


def test_published_event_hash_vectors_hold() -> None:
    import re

    docs = Path(__file__).resolve().parent.parent / "docs" / "audit-proofs.md"
    section = docs.read_text().split("## Event hash vectors", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    v = json.loads(block.group(1))
    event = dict(v["event"])
    assert event_hash(**event) == v["scheme_1_hash"]
    commitment = commit_actor(v["actor_salt"], event["actor"])
    assert commitment == v["actor_commitment"]
    assert event_hash(**event, scheme=2, actor_commitment=commitment) == v["scheme_2_hash"]
    event["actor"] = "anyone"  # scheme 2 does not hash the actor itself
    assert event_hash(**event, scheme=2, actor_commitment=commitment) == v["scheme_2_hash"]
