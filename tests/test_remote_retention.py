"""Legal holds, deleting artifacts, pruning, the retention policy, the cold tier's status and
garbage collection through the server: the remote SDK answers what the local registry does on
the same store, project admins manage holds and deletions, global admins sweep, bad input is
one clear 4xx line with nothing written, and another tenant's holds stay invisible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelvault import Conflict, Forbidden, InvalidInput, NotFound, Registry
from modelvault.service import identity

from .conftest import write_model
from .server_fixtures import LiveServer


@pytest.fixture
def alice(server: LiveServer, tmp_path: Path) -> Registry:
    """fraud:1-6, fraud:6 in production."""
    reg = server.client("alice")
    for n in range(1, 7):
        reg.register("fraud", write_model(tmp_path, f"m{n}", b"weights %d" % n))
    reg.promote("fraud:6", "staging")
    server.client("bob").approve("fraud:6")
    reg.promote("fraud:6", "production", reason="launch")
    return reg


def test_holds_deletions_and_pruning_match_local(alice: Registry, server: LiveServer) -> None:
    here = server.local("alice")
    held = alice.hold("fraud:2", reason="litigation 2026-17")
    assert held == {"version": "default/fraud:2", "held": True, "reason": "litigation 2026-17"}
    assert alice.holds() == here.holds() and len(alice.holds()) == 1
    with pytest.raises(Conflict, match="legal hold"):
        alice.delete_artifact("fraud:2", reason="cleanup")
    with pytest.raises(Conflict, match="already under a legal hold"):
        alice.hold("fraud:2", reason="again")
    deleted = alice.delete_artifact("fraud:3", reason="cleanup")
    assert deleted["version"] == "default/fraud:3" and deleted["deleted_by"] == "alice"
    with pytest.raises(Conflict, match="already deleted"):
        here.delete_artifact("fraud:3", reason="again")
    dry = alice.prune("fraud", keep_last=2, dry_run=True)
    assert dry == here.prune("fraud", keep_last=2, dry_run=True)
    assert {x["version"]: x["action"] for x in dry} == {
        "default/fraud:4": "would delete",
        "default/fraud:2": "kept",
        "default/fraud:1": "would delete",
    }
    assert alice.release_hold("fraud:2", reason="settled")["held"] is False
    done = alice.prune("fraud", keep_last=2, reason="keep two")
    assert [x["action"] for x in done] == ["deleted"] * 3
    assert alice.archive_of("fraud:1") is None is here.archive_of("fraud:1")
    assert alice.restore("fraud:6") == {
        "version": "default/fraud:6",
        "restored": False,
        "blobs": 0,
        "bytes": 0,
    }
    actions = [e.action for e in here.audit(limit=None) if e.actor == "alice"]
    assert actions.count("version.delete_artifact") == 4
    assert {"hold.add", "hold.remove"} <= set(actions)


def test_retention_policy_and_gc_run_on_the_server(alice: Registry, server: LiveServer) -> None:
    here = server.local("alice")
    Path(server.registry.settings.retention).write_text("[defaults]\nkeep_last = 3\n")
    dry = alice.apply_retention(dry_run=True)
    assert dry == here.apply_retention(dry_run=True)
    assert {x["version"] for x in dry} == {f"default/fraud:{n}" for n in (1, 2, 3)}
    done = alice.apply_retention()
    assert {x["action"] for x in done} == {"deleted"}
    assert alice.gc(dry_run=True, grace_seconds=0) == here.gc(dry_run=True, grace_seconds=0)
    swept = alice.gc(grace_seconds=0)
    assert swept["blobs"] >= 3 and swept["dry_run"] is False
    assert here.gc(dry_run=True, grace_seconds=0)["blobs"] == 0


def test_project_admins_manage_retention_and_global_admins_sweep(
    alice: Registry, server: LiveServer
) -> None:
    ctx = server.registry._ctx
    for user, role in (("vic", "viewer"), ("dan", "deployer"), ("pam", "admin")):
        identity.create_user(ctx, user)
        identity.grant(ctx, "default", user, role)
    vic, dan, pam = (
        server.remote(identity.create_token(ctx, user)[0]) for user in ("vic", "dan", "pam")
    )
    assert vic.archive_of("fraud:1") is None
    assert vic.holds() == []
    for attempt in (
        lambda: vic.hold("fraud:1", reason="x"),
        lambda: dan.delete_artifact("fraud:1", reason="x"),
        lambda: dan.prune("fraud", keep_last=1),
        lambda: dan.restore("fraud:1"),
    ):
        with pytest.raises(Forbidden, match="admin"):
            attempt()
    assert pam.hold("fraud:1", reason="audit")["held"] is True
    assert pam.delete_artifact("fraud:2", reason="cleanup")["deleted_by"] == "pam"
    for sweep in (lambda: pam.gc(dry_run=True), lambda: pam.apply_retention(dry_run=True)):
        with pytest.raises(Forbidden):
            sweep()


def test_bad_input_is_one_clear_line_and_writes_nothing(
    alice: Registry, server: LiveServer
) -> None:
    here = server.local("alice")
    before = len(here.audit(limit=None))
    with pytest.raises(InvalidInput, match="reason"):
        alice.hold("fraud:1", reason="")
    with pytest.raises(NotFound, match="not under a legal hold"):
        alice.release_hold("fraud:1", reason="x")
    with pytest.raises(Conflict, match="production"):
        alice.delete_artifact("fraud:6", reason="x")
    Path(server.registry.settings.retention).write_text("[defaults]\nkeep = 3\n")
    with pytest.raises(InvalidInput, match="unknown key 'keep'"):
        alice.apply_retention()
    with server.api(server.token("alice")) as c:
        answers = [
            c.post("/projects/default/models/fraud/prune", json={"keep_last": 0}),
            c.post("/gc", json={"grace_seconds": -1}),
            c.delete("/projects/default/refs/fraud:1/artifact"),  # no reason
        ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "\n" not in answer.json()["error"]["message"]
    assert len(here.audit(limit=None)) == before
    assert here.holds() == []


def test_another_projects_holds_are_invisible(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    alice.hold("fraud:1", reason="litigation")
    ctx = server.registry._ctx
    identity.create_user(ctx, "ann")
    identity.grant(ctx, "bank-a", "ann", "admin")
    identity.grant(ctx, "default", "ann", "viewer")  # the user could, but the token is scoped
    token, _ = identity.create_token(ctx, "ann", project="bank-a")
    with server.api(token) as c:
        assert c.get("/holds").json() == []
        for method, path in (
            ("GET", "/projects/{}/refs/fraud:1/archive"),
            ("POST", "/projects/{}/refs/fraud:1/restore"),
            ("DELETE", "/projects/{}/refs/fraud:1/hold?reason=x"),
        ):
            existing = c.request(method, path.format("default"))
            absent = c.request(method, path.format("bank-zz"))
            assert existing.status_code == absent.status_code == 404, path
            assert existing.json() == json.loads(absent.text.replace("bank-zz", "default")), path
    assert len(server.local("alice").holds()) == 1


def test_the_cli_holds_and_sweeps_through_the_server(
    alice: Registry,
    server: LiveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelvault.cli import main

    monkeypatch.setenv("MODELVAULT_URL", server.url)
    monkeypatch.setenv("MODELVAULT_TOKEN", server.token("alice"))
    monkeypatch.setenv("MODELVAULT_HOME", str(tmp_path / "client-home"))
    capsys.readouterr()
    assert main(["hold", "add", "fraud:2", "--reason", "litigation"]) == 0
    assert main(["hold", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)[0]["version"] == "default/fraud:2"
    assert main(["delete-artifact", "fraud:2", "--reason", "x"]) == Conflict.exit_code
    assert "legal hold" in capsys.readouterr().err
    assert main(["gc", "--dry-run"]) == 0
    assert server.local("alice").holds()[0]["by"] == "alice"
