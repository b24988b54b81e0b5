"""Evaluations, gates, lineage, snapshots and run comparison through the server: the remote
SDK answers what the local registry reads from the same store, recording needs ``log``, bad
input is one clear 4xx line with nothing written, lineage stops at projects the token may not
read, and the CLI records and checks gates remotely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelvault import Conflict, Forbidden, GateFailed, InvalidInput, NotFound, Registry
from modelvault.domain import FileEntry
from modelvault.manifest import manifest_bytes
from modelvault.service import identity

from .conftest import write_model
from .server_fixtures import LiveServer

POLICY = """
[defaults]
approvals = 1

[defaults.gates.production]
eval_set = "claims-eval"
rules = ["auc >= 0.90", "p95_latency_ms <= 50"]
"""


@pytest.fixture
def alice(server: LiveServer, tmp_path: Path) -> Registry:
    """fraud:1 and fraud:2 in staging, approved; two snapshots of the evaluation set (stored,
    made where the store is); the production gate needs a report on it."""
    here = server.local("alice")
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "set.csv").write_text("x,label\n1,1\n0,0\n1,0\n")
    here.snapshot(eval_dir, name="claims-eval", store=True)
    (eval_dir / "set.csv").write_text("x,label\n1,1\n0,0\n")
    here.snapshot(eval_dir, name="claims-eval", store=True)
    reg = server.client("alice")
    bob = server.client("bob")
    for n in (1, 2):
        reg.register("fraud", write_model(tmp_path, f"m{n}", f"model {n}".encode()))
        reg.promote(f"fraud:{n}", "staging")
        bob.approve(f"fraud:{n}")
    server.registry.settings.policy.parent.mkdir(parents=True, exist_ok=True)
    server.registry.settings.policy.write_text(POLICY)
    return reg


def test_remote_answers_are_what_the_store_holds(alice: Registry, server: LiveServer) -> None:
    here = server.local("alice")
    failing = alice.check_gate("fraud:2")
    assert failing == here.check_gate("fraud:2") and not failing.passed
    with pytest.raises(GateFailed):
        alice.promote("fraud:2", "production", reason="r")
    report = alice.record_evaluation(
        "fraud:2",
        "claims-eval",
        metrics={"auc": 0.93},
        latency_ms={"p95": 12.0},
        outputs=[1, 0],
    )
    assert report == here.evaluations("fraud:2")[-1]
    assert report.examples == 2 and report.outputs_digest is not None
    alice.record_evaluation("fraud:1", "claims-eval", metrics={"auc": 0.91}, outputs=[1, 1])
    assert alice.evaluations("fraud:2") == here.evaluations("fraud:2")
    passing = alice.check_gate("fraud:2")
    assert passing == here.check_gate("fraud:2") and passing.passed
    assert alice.check_gate("fraud:2", "staging") == here.check_gate("fraud:2", "staging")
    assert alice.promote("fraud:2", "production", reason="r").to_stage == "production"
    compared = alice.compare("fraud:1", "fraud:2", eval_set="claims-eval", top=5)
    assert compared == here.compare("fraud:1", "fraud:2", eval_set="claims-eval", top=5)
    assert compared.agreement == 0.5
    assert alice.lineage("fraud:2") == here.lineage("fraud:2")
    assert [n.kind for n in alice.lineage("fraud:2").upstream].count("report") == 1
    assert alice.openlineage("fraud:2") == here.openlineage("fraud:2")
    assert alice.snapshots() == here.snapshots()
    old, new = (s.ref for s in reversed(here.snapshots(name="claims-eval")))
    assert alice.get_snapshot("claims-eval") == here.get_snapshot("claims-eval")
    assert alice.get_snapshot(old) == here.get_snapshot(old)
    assert alice.diff_snapshots(old, new) == here.diff_snapshots(old, new)
    assert [c.path for c in alice.diff_snapshots(old, new).changed] == ["set.csv"]


def test_snapshots_are_hashed_on_the_client_and_stored_on_the_server(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    here = server.local("alice")
    data = tmp_path / "claims"
    (data / "sub").mkdir(parents=True)
    (data / "set.csv").write_text("x,label\n1,1\n0,0\n1,1\n")
    (data / "sub" / "notes.txt").write_text("three rows")
    made = alice.snapshot(data, name="claims", store=True)
    assert made == here.get_snapshot("claims")
    assert (made.file_count, made.stored, made.created_by) == (2, True, "alice")
    assert here.snapshot(data, name="claims", store=True) == made  # same bytes, same digest
    report = alice.record_evaluation("fraud:1", made, metrics={"auc": 0.9}, outputs=[1, 0, 1])
    assert report.examples == 3  # the server read the labels from the uploaded files
    from_path = alice.record_evaluation("fraud:2", data, metrics={"auc": 0.8})
    assert from_path.eval_set == made.digest
    pinned = alice.snapshot_external("s3://bucket/claims.parquet?versionId=3HL4kqtJ", name="s3c")
    assert pinned == here.get_snapshot("s3c") and pinned.system == "s3"
    with pytest.raises(InvalidInput, match="pin"):
        alice.snapshot_external("s3://bucket/claims.parquet")
    with alice.start_run("train", capture_code=False, capture_environment=False) as run:
        assert run.use_dataset("claims", "train") == made
        assert alice.use_dataset(run.id, pinned, role="eval") == pinned
    inputs = here.get_run(run.id).inputs
    assert inputs == alice.get_run(run.id).inputs and len(inputs) == 2


def test_bad_snapshots_are_refused_and_record_nothing(alice: Registry, server: LiveServer) -> None:
    here = server.local("alice")
    before = here.snapshots()
    absent = FileEntry("a.csv", 3, "sha256:" + "ab" * 32, 0o644)
    manifest = manifest_bytes([absent]).decode("utf-8")
    with server.api(server.token("alice")) as c:
        answers = [
            c.post("/projects/default/snapshots", json={"name": "x", "manifest_text": "{oops"}),
            c.post("/projects/default/snapshots", json={"name": "x", "external": "s3://b/k"}),
            c.post("/projects/default/snapshots", json={"name": "x"}),
            c.post(
                "/projects/default/snapshots",
                json={"name": "x", "manifest_text": manifest, "stored": True},
            ),
            c.post(
                "/projects/default/runs/nope/datasets",
                json={"snapshot": "claims-eval", "role": "x"},
            ),
        ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        assert "\n" not in answer.json()["error"]["message"]
    assert answers[3].status_code == 404 and "not uploaded" in answers[3].text
    assert here.snapshots() == before


def test_runs_compare_remotely(alice: Registry, server: LiveServer) -> None:
    ids = []
    for lr in (0.1, 0.2):
        with alice.start_run("tune", capture_code=False, capture_environment=False) as run:
            run.log_params({"lr": lr, "depth": 3})
            run.log_metric("auc", lr * 4)
            ids.append(run.id)
    compared = alice.compare_runs(ids)
    assert compared == server.local("alice").compare_runs(ids)
    assert set(compared.differs) == {"auc", "lr"}
    with pytest.raises(InvalidInput, match="at least two runs"):
        alice.compare_runs(ids[:1])


def test_run_artifacts_are_uploaded_and_listed_as_locally(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    here = server.local("alice")
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "model.txt").write_text("weights")
    (out / "plots" / "roc.svg").write_text("<svg/>")
    with alice.start_run("train", capture_code=False, capture_environment=False) as run:
        listed = alice.log_artifact(run.id, out)
        run.log_artifact(out / "model.txt", artifact_path="final/model.txt")
        with pytest.raises(Conflict, match="write-once"):
            alice.log_artifact(run.id, out)
        with pytest.raises(InvalidInput, match="artifact path"):
            alice.log_artifact(run.id, out, artifact_path="../escape")
    assert [a.path for a in listed] == ["out/model.txt", "out/plots/roc.svg"]
    stored = here.get_run(run.id).artifacts
    assert stored == alice.get_run(run.id).artifacts and len(stored) == 3
    assert server.registry._ctx.blobs.read_bytes(listed[0].digest) == b"weights"
    with server.local("alice").start_run(
        "train", capture_code=False, capture_environment=False
    ) as mine:
        assert here.log_artifact(mine.id, out) == listed  # the same entries locally
    other = alice.start_run("other", capture_code=False, capture_environment=False)
    with server.api(server.token("alice")) as c, other as open_:
        fake = {"path": "x.bin", "digest": "sha256:" + "cd" * 32, "size": 1}
        absent = c.post(f"/projects/default/runs/{open_.id}/artifacts", json={"files": [fake]})
        wrong = {**fake, "digest": listed[0].digest, "size": 999}
        sized = c.post(f"/projects/default/runs/{open_.id}/artifacts", json={"files": [wrong]})
    assert absent.status_code == 404 and "not uploaded" in absent.text
    assert sized.status_code == 400 and "size" in sized.text
    assert alice.get_run(open_.id).artifacts == ()


def test_registering_from_a_run_carries_its_record_remotely(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    here = server.local("alice")
    model = tmp_path / "fitted"
    model.mkdir()
    (model / "w.bin").write_bytes(b"fitted weights")
    with alice.start_run("fraud", capture_code=False, capture_environment=False) as run:
        run.log_params({"C": 1.0})
        run.log_metric("auc", 0.8)
        run.log_metric("auc", 0.9)
        run.use_dataset("claims-eval", "eval")
        run.log_artifact(model, artifact_path="model")
        version = run.register_model("fraud", tags={"team": "risk"})
        explicit = alice.register("fraud", model, run=run.id, metrics={"auc": 0.95})
        run.log_metric("loss", float("nan"))
        with pytest.raises(InvalidInput, match="'loss'"):
            run.register_model("fraud", model)
    assert version == here.get(f"fraud:{version.number}")
    assert (version.run_id, version.params, version.metrics) == (run.id, {"C": 1.0}, {"auc": 0.9})
    assert [(d.name, d.role) for d in version.datasets] == [("claims-eval", "eval")]
    assert version.tags == {"team": "risk"}
    assert [f.path for f in here.manifest(str(version)).files] == ["w.bin"]
    assert explicit.metrics == {"auc": 0.95}
    assert explicit.artifact_digest == version.artifact_digest  # the same file either way
    assert alice.get_run(run.id).versions == ("fraud:3", "fraud:4")
    empty = alice.start_run("x", capture_code=False, capture_environment=False)
    with empty, pytest.raises(InvalidInput, match="logged no model"):
        alice.register("empty", run=empty.id)


def test_recording_needs_log_and_reading_needs_read(alice: Registry, server: LiveServer) -> None:
    ctx = server.registry._ctx
    for user, role in (("vic", "viewer"), ("cora", "contributor")):
        identity.create_user(ctx, user)
        identity.grant(ctx, "default", user, role)
    vic = server.remote(identity.create_token(ctx, "vic")[0])
    assert not vic.check_gate("fraud:1").passed and vic.evaluations("fraud:1") == []
    assert vic.lineage("fraud:1").root == "default/fraud:1"
    with pytest.raises(Forbidden, match="log"):
        vic.record_evaluation("fraud:1", "claims-eval", metrics={"auc": 0.99})
    with pytest.raises(Forbidden, match="log"):
        vic.snapshot_external("s3://bucket/k.parquet?versionId=1", name="k")
    cora = server.remote(identity.create_token(ctx, "cora")[0])
    assert cora.record_evaluation("fraud:1", "claims-eval", metrics={"auc": 0.5}).created_by == (
        "cora"
    )


def test_bad_input_is_one_clear_line_and_writes_nothing(
    alice: Registry, server: LiveServer
) -> None:
    before = len(server.local("alice").audit(limit=None))
    with pytest.raises(NotFound, match="snapshot"):
        alice.record_evaluation("fraud:1", "no-such-set", metrics={"auc": 0.9})
    with pytest.raises(InvalidInput, match="outputs"):
        alice.record_evaluation("fraud:1", "claims-eval", metrics={"auc": 0.9}, outputs=[1])
    with pytest.raises(InvalidInput, match="no report with outputs"):
        alice.compare("fraud:1", "fraud:2", eval_set="claims-eval")
    with pytest.raises(InvalidInput, match="record_evaluation"):
        alice.evaluate("fraud:1", "claims-eval")
    with pytest.raises(InvalidInput, match="does not exist"):
        alice.record_evaluation("fraud:1", Path("/no/such/set"), metrics={"auc": 0.9})  # type: ignore[arg-type]
    with server.api(server.token("alice")) as c:
        words = c.post(
            "/projects/default/refs/fraud:1/evaluations",
            json={"eval_set": "claims-eval", "metrics": {"auc": "high"}},
        )
        path = c.post(  # a server path is never snapshotted
            "/projects/default/refs/fraud:1/evaluations",
            json={"eval_set": str(server.registry.settings.home), "metrics": {"auc": 0.9}},
        )
    assert words.status_code == 400 and "\n" not in words.json()["error"]["message"]
    assert path.status_code in (400, 404) and path.json()["error"]["code"] != "internal"
    assert server.local("alice").evaluations("fraud:1") == []
    assert len(server.local("alice").audit(limit=None)) == before


def test_lineage_stops_at_projects_the_token_may_not_read(
    alice: Registry, server: LiveServer, tmp_path: Path
) -> None:
    alice.register(
        "child", write_model(tmp_path, "c", b"child"), project="bank-b", parents=["default/fraud:1"]
    )
    here = server.local("alice")
    assert [n.id for n in here.lineage("fraud:1").downstream] == ["bank-b/child:1"]
    ctx = server.registry._ctx
    identity.create_user(ctx, "ann")
    identity.grant(ctx, "default", "ann", "admin")
    identity.grant(ctx, "bank-b", "ann", "viewer")  # the user could, but the token is scoped
    ann = server.remote(identity.create_token(ctx, "ann", project="default")[0])
    assert ann.lineage("fraud:1").downstream == ()
    assert server.remote(server.token("alice")).lineage("fraud:1") == here.lineage("fraud:1")
    with server.api(identity.create_token(ctx, "ann", project="default")[0]) as c:
        for path in ("refs/child:1/lineage", "refs/child:1/evaluations", "snapshots"):
            existing = c.get(f"/projects/bank-b/{path}")
            absent = c.get(f"/projects/bank-zz/{path}")
            assert existing.status_code == absent.status_code == 404, path
            assert existing.json() == json.loads(absent.text.replace("bank-zz", "bank-b")), path


def test_the_cli_records_and_checks_gates_through_the_server(
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
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"metrics": {"auc": 0.95}, "latency_ms": {"p95": 10}}))
    capsys.readouterr()
    assert main(["gate", "fraud:2"]) == GateFailed.exit_code
    capsys.readouterr()
    code = main(
        ["eval", "record", "fraud:2", "--eval-set", "claims-eval", "--metrics", str(metrics)]
    )
    assert code == 0
    assert main(["gate", "fraud:2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    assert main(["eval", "list", "fraud:2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["metrics"] == {"auc": 0.95}
    assert main(["data", "list"]) == 0
    assert "claims-eval" in capsys.readouterr().out
    assert server.local("alice").evaluations("fraud:2")[0].created_by == "alice"
