"""Deployments through the server: the remote SDK returns what the local registry reads from
the same store, permissions are enforced per route, bad input is one clear 4xx line with
nothing written, another tenant's deployments stay invisible, and the CLI deploys remotely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelvault import Forbidden, InvalidInput, NotFound, Registry
from modelvault.service import identity

from .deploy_helpers import register_model, sklearn_dir, to_production
from .server_fixtures import LiveServer


@pytest.fixture
def alice(server: LiveServer, tmp_path: Path) -> Registry:
    """fraud:1 and fraud:2 staged and approved, fraud:1 serving production."""
    reg = server.client("alice")
    bob = server.client("bob")
    for c in (1.0, 0.5):
        register_model(reg, tmp_path, "fraud", c)
    to_production(reg, bob, "fraud:1")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:1", "production", reason="first launch")
    return reg


def test_remote_deployments_are_what_the_store_holds(alice: Registry, server: LiveServer) -> None:
    here = server.local("alice")
    assert alice.deployment("fraud", "production") == here.deployment("fraud", "production")
    canary = alice.deploy_release("fraud:2", "production", canary="10,100", bake="1m")
    assert canary == here.deployment("fraud", "production")
    assert [(a.release.key, a.weight) for a in canary.spec.arms] == [
        ("fraud:2", 10.0),
        ("fraud:1", 90.0),
    ]
    assert alice.status() == here.status()
    assert alice.status(environment="production", at="2026-03-01T08:00:00Z") == []
    assert alice.status(all_projects=True) == here.status(all_projects=True)
    assert alice.deployment_history("fraud", "production") == here.deployment_history(
        "fraud", "production"
    )
    remote_rollout = alice.rollout_status("fraud", "production")
    assert remote_rollout.deployment == canary
    assert [g.rule for g in remote_rollout.guardrails] == ["error_rate > 2x baseline"]
    paused = alice.rollout("pause", "fraud", "production").spec.rollout
    assert paused is not None and paused.status == "paused"
    assert alice.rollout("resume", "fraud", "production") == here.deployment("fraud", "production")
    failures: dict[str, int] = {}
    judged = alice.judge_rollouts("production", failures)
    assert [(t.model, t.action) for t in judged] == [("fraud", "hold")]
    done = alice.rollout("promote", "fraud", "production", reason="looks good")
    assert [(a.release.key, a.weight) for a in done.spec.arms] == [("fraud:2", 100.0)]
    assert here.get("fraud@production").number == 2
    back = alice.rollback_deployment("fraud", "production", reason="pager")
    assert back == here.deployment("fraud", "production")
    assert [(a.release.key, a.weight) for a in back.spec.arms] == [("fraud:1", 100.0)]
    spec = {"release": "fraud:2", "features": {"checkout": "fraud:1"}}
    applied = alice.deploy("fraud", "staging", spec, reason="spec")
    assert applied == here.deployment("fraud", "staging")
    assert alice.add_environment("eu-west").name == "eu-west"
    assert alice.environments() == here.environments()
    deployed = [
        e
        for e in here.audit(limit=None)
        if e.subject.startswith(("default/production/", "default/staging/"))
    ]
    assert len(deployed) >= 7 and {e.actor for e in deployed} == {"alice"}


def test_a_spec_file_is_read_on_the_client(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("model: fraud\nenvironment: staging\nrelease: fraud:2\nreason: from a file\n")
    dep = alice.deploy_file(path)
    assert dep == server.local("alice").deployment("fraud", "staging")
    assert dep.reason == "from a file"


def test_gateways_stay_where_the_store_is(alice: Registry) -> None:
    with pytest.raises(InvalidInput, match="modelvault gateway"):
        alice.gateway_app("production")


def test_permissions_per_route(alice: Registry, server: LiveServer) -> None:
    ctx = server.registry._ctx
    for user, role in (("vic", "viewer"), ("dan", "deployer")):
        identity.create_user(ctx, user)
        identity.grant(ctx, "default", user, role)
    vic = server.remote(identity.create_token(ctx, "vic")[0])
    assert vic.deployment("fraud", "production").revision == 1  # reading needs read only
    for attempt, permission in (
        (lambda: vic.deploy_release("fraud:2", "staging"), "deploy"),
        (lambda: vic.rollout("advance", "fraud", "production"), "deploy"),
        (lambda: vic.rollback_deployment("fraud", "production", reason="x"), "rollback"),
        (lambda: vic.judge_rollouts("production"), "deploy"),
        (lambda: vic.add_environment("eu"), "admin"),
    ):
        with pytest.raises(Forbidden, match=permission):
            attempt()
    with server.api(identity.create_token(ctx, "vic")[0]) as c:
        answer = c.put(
            "/projects/default/deployments/staging/fraud", json={"spec": {"release": "fraud:2"}}
        )
    assert answer.status_code == 403 and "deploy" in answer.json()["error"]["message"]
    dan = server.remote(identity.create_token(ctx, "dan")[0])
    assert dan.deploy_release("fraud:2", "staging").revision == 1
    with pytest.raises(Forbidden, match="admin"):
        dan.add_environment("eu")
    assert server.local("alice").deployment("fraud", "staging").set_by == "dan"


def test_bad_input_is_one_clear_line_and_writes_nothing(
    alice: Registry, server: LiveServer
) -> None:
    before = len(server.local("alice").audit(limit=None))
    with pytest.raises(InvalidInput, match="last canary step must be 100"):
        alice.deploy_release("fraud:2", "production", canary="1,5")
    with pytest.raises(InvalidInput, match="unknown key 'colour'"):
        alice.deploy("fraud", "production", {"release": "fraud:1", "colour": "red"})
    with pytest.raises(NotFound, match="not deployed"):
        alice.deployment("fraud", "staging")
    with server.api(server.token("alice")) as c:
        verb = c.post("/projects/default/deployments/production/fraud/rollout", json={"verb": "x"})
        spec = c.put("/projects/default/deployments/production/fraud", json={"spec": "fraud:1"})
    for answer in (verb, spec):
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]["message"]
        assert message and "\n" not in message
    assert len(server.local("alice").audit(limit=None)) == before
    assert len(alice.deployment_history("fraud", "production")) == 1


def test_another_projects_deployments_are_invisible(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    ctx = server.registry._ctx
    alice.register("fraud", sklearn_dir(tmp_path, "a"), project="bank-a", capture_code=False)
    identity.create_user(ctx, "ann")
    identity.grant(ctx, "bank-a", "ann", "admin")
    identity.grant(ctx, "default", "ann", "viewer")  # the user could, but the token is scoped
    token, _ = identity.create_token(ctx, "ann", project="bank-a")
    base = "/projects/{}/deployments/production/fraud"
    reads = ["/projects/{}/deployments", "/projects/{}/environments", base, base + "/history"]
    reads.append(base + "/rollout")
    with server.api(token) as c:
        for path in reads:
            existing, absent = c.get(path.format("default")), c.get(path.format("bank-zz"))
            assert existing.status_code == absent.status_code == 404, path
            assert existing.json() == json.loads(absent.text.replace("bank-zz", "default")), path
        assert c.get("/deployments").json() == []  # default's deployment is not this token's
        probe = c.put(
            "/projects/bank-a/deployments/staging/fraud",
            json={"spec": {"arms": ["fraud:1", "default/fraud:1"]}},
        )
        assert probe.status_code == 404  # not even as a release in ann's own deployment
        rollback = c.post(base.format("default") + "/rollback", json={"reason": "x"})
        assert rollback.status_code == 404
    assert server.local("alice").deployment("fraud", "production").revision == 1


def test_the_cli_deploys_through_the_server(
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
    assert main(["deploy", "fraud:2", "--env", "staging", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["arms"][0]["release"]["version"] == 2
    assert main(["status"]) == 0
    assert "staging" in capsys.readouterr().out
    assert main(["rollout", "status", "fraud", "--env", "production"]) == 0
    assert "fraud:1" in capsys.readouterr().out
    assert main(["env", "add", "eu-west"]) == 0
    assert "eu-west" in capsys.readouterr().err
    assert (
        main(["deploy", "fraud:2", "--env", "production", "--canary", "5"])
        == InvalidInput.exit_code
    )
    assert "last canary step must be 100" in capsys.readouterr().err
    assert server.local("alice").deployment("fraud", "staging").set_by == "alice"
