"""`explain`: the insurance story end to end, over simulated weeks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modelvault import Registry, merkle
from modelvault import checkpoints as cps
from modelvault.explain import render

from .conftest import FakeClock, write_model


@pytest.fixture
def story(
    reg: Registry, as_user: Callable[[str], Registry], clock: FakeClock, tmp_path: Path
) -> dict[str, object]:
    bob, carol = as_user("bob"), as_user("carol")
    marks: dict[str, object] = {}
    for n, (recall, approver, comment) in enumerate(
        [
            (0.71, bob, "validated on Q1 claims"),
            (0.78, carol, "better recall"),
            (0.80, bob, "looks fine"),
        ],
        start=1,
    ):
        reg.register(
            "fraud",
            write_model(tmp_path, f"v{n}", b"weights %d" % n),
            params={"depth": 4 + n},
            metrics={"recall": recall},
            capture_environment=False,
        )
        reg.promote(f"fraud:{n}", "staging")
        clock.advance(days=1)
        approver.approve(f"fraud:{n}", comment=comment)
        reg.promote(f"fraud:{n}", "production", reason=f"release {n}")
        marks[f"v{n}"] = clock.advance(days=1)
        clock.advance(days=12)
    # version 3 turns out bad: two days after its launch it is rolled back
    marks["bad_window"] = marks["v3"]
    clock.now = marks["v3"]  # type: ignore[assignment]
    clock.advance(days=2)
    reg.rollback("fraud", reason="false positives spiked")
    marks["after"] = clock.advance(days=1)
    return marks


def test_explain_inside_the_bad_window_names_the_bad_version_approver_and_rollback(
    reg: Registry, story: dict[str, object]
) -> None:
    report = reg.explain("fraud@production", at=story["bad_window"])  # type: ignore[arg-type]
    assert report["version"]["ref"] == "default/fraud:3"
    assert report["serving"]["how"] == "promotion" and report["serving"]["by"] == "alice"
    assert report["serving"]["until"] is not None  # it was rolled back later
    [approval] = report["approvals"]
    assert approval["approver"] == "bob" and approval["comment"] == "looks fine"
    assert report["previous_production"] == 2
    assert report["record"]["params"] == {"depth": 7}
    assert any(c["key"] == "recall" for c in report["diff"]["metrics"])
    rollback = [e for e in report["around"] if e["action"] == "stage.rollback"]
    assert rollback and rollback[0]["reason"] == "false positives spiked"
    assert report["gates"]["checks"] is not None  # the promotion's gate results were audited
    # every cited fact carries an inclusion proof that verifies against a signed checkpoint
    proofs = report["proofs"]
    cp = cps.Checkpoint.from_json(proofs["checkpoint"])
    assert cps.signature_ok(cps.load_public(reg.audit_public_key()), cp)
    cited = {report["version"]["audit"]["seq"], report["serving"]["audit"]["seq"],
             approval["audit"]["seq"], rollback[0]["seq"]}  # fmt: skip
    assert cited <= {int(s) for s in proofs["events"]}
    for seq, p in proofs["events"].items():
        assert merkle.verify_inclusion(
            merkle.leaf_hash(bytes.fromhex(p["event_hash"])),
            int(seq) - 1,
            cp.tree_size,
            [bytes.fromhex(x) for x in p["path"]],
            bytes.fromhex(cp.root),
        )


def test_explain_after_the_rollback_reports_the_restored_version(
    reg: Registry, story: dict[str, object]
) -> None:
    report = reg.explain("fraud", at=story["after"])  # type: ignore[arg-type]
    assert report["version"]["ref"] == "default/fraud:2"
    assert report["serving"]["how"] == "rollback"
    assert report["serving"]["audit"]["action"] == "stage.rollback"
    [approval] = report["approvals"]
    assert approval["approver"] == "carol"
    early = reg.explain("fraud@production", at=story["v1"])  # type: ignore[arg-type]
    assert early["version"]["ref"] == "default/fraud:1" and early["previous_production"] is None


def test_explain_cli_formats(cli: object, tmp_path: Path) -> None:
    run = cli.run  # type: ignore[attr-defined]
    assert run("register", "fraud", str(write_model(tmp_path, "a", b"a")))[0] == 0
    assert run("promote", "fraud:1", "--to", "staging")[0] == 0
    assert run("approve", "fraud:1", "--comment", "ok", actor="bob")[0] == 0
    assert run("promote", "fraud:1", "--to", "production", "--reason", "launch")[0] == 0
    code, out, err = run("explain", "fraud@production")
    assert code == 0, err
    assert "default/fraud:1 was serving" in out and "bob at" in out and "[audit #" in out
    code, out, _ = run("explain", "fraud@production", "--format", "markdown")
    assert out.startswith("# default/fraud:1 was serving") and "## Approvals" in out
    code, out, _ = run("explain", "fraud@production", "--format", "html")
    assert out.startswith("<!doctype html>") and "<h2>Approvals</h2>" in out
    code, out, _ = run("explain", "fraud@production", "--format", "json")
    assert json.loads(out)["approvals"][0]["approver"] == "bob"
    code, _, err = run("explain", "fraud@production", "--format", "pdf")
    assert code == 2 and "--format 'pdf'" in " ".join(err.split()) and "Traceback" not in err
    assert run("register", "fraud", str(write_model(tmp_path, "b", b"b")))[0] == 0
    code, out, _ = run("explain", "fraud:2")
    assert code == 0 and "default/fraud:2 was not in production" in out
    code, _, err = run("explain", "fraud@production", "--at", "2001-01-01T00:00Z")
    assert code == 3 and "Traceback" not in err


def test_explain_with_an_environment_reports_the_traffic_split(
    reg: Registry, as_user: Callable[[str], Registry], clock: FakeClock, tmp_path: Path
) -> None:
    from .deploy_helpers import register_model, to_production

    bob = as_user("bob")
    for c in (1.0, 0.5):
        register_model(reg, tmp_path, "fraud", c)
    to_production(reg, bob, "fraud:1")
    reg.deploy_release("fraud:1", "production", reason="first launch")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:2", "production", canary="10,50,100", bake="1h", reason="canary")
    during = clock.advance(minutes=5)
    report = reg.explain("fraud@production", env="production", at=during)
    arms = {a["release"]: a["weight"] for a in report["deployment"]["arms"]}
    assert arms == {"fraud:1": 90.0, "fraud:2": 10.0}
    assert report["deployment"]["reason"] == "canary"
    assert str(report["deployment"]["audit"]["seq"]) in report["proofs"]["events"]
    assert any(e["action"] == "deployment.apply" for e in report["around"])
    text = render(report, "text")
    assert "Traffic\n  fraud:2 10%, fraud:1 90% (revision 2" in text
