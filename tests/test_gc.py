"""Deleting artifacts, legal holds, pruning and garbage collection: gc frees exactly the blobs
nothing needs, and never one of a version in production, held, in the window, or in flight."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from modelvault import Conflict, InvalidInput, NotFound, Registry, Settings

from .conftest import write_model

Opener = Callable[[str], Registry]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every blob a file here, which the tests count and age on disk; gc of the rows that
    small files are kept as by default is tested in test_inline_blobs.py."""
    return replace(settings, inline_blob_max="0")


def _blob_files(reg: Registry) -> dict[str, Path]:
    root = Path(reg.settings.blobs.removeprefix("file://")) / "sha256"
    return {f"sha256:{p.name}": p for p in root.rglob("*") if p.is_file()}


def _age_everything(reg: Registry, seconds: float) -> None:
    old = time.time() - seconds
    for path in _blob_files(reg).values():
        os.utime(path, (old, old))


@pytest.fixture
def crowded(reg: Registry, as_user: Opener, tmp_path: Path) -> Registry:
    """200 versions of fraud; every tenth reuses the bytes of the version after it; 5 was in
    production before 50 replaced it; 7 is held; a stored dataset snapshot."""
    bob = as_user("bob")
    for n in range(1, 201):
        content = b"weights %d" % (n + 1 if n % 10 == 0 else n)
        model = write_model(tmp_path / "m", f"v{n}", content)
        reg.register("fraud", model, capture_environment=False, capture_code=False)
    for n in (5, 50):
        reg.promote(f"fraud:{n}", "staging")
        bob.approve(f"fraud:{n}")
        reg.promote(f"fraud:{n}", "production", reason="launch")
    reg.hold("fraud:7", reason="litigation 2026-17")
    data = tmp_path / "data"
    data.mkdir()
    (data / "claims.csv").write_text("id,amount\n1,10\n")
    reg.snapshot(data, name="claims", store=True)
    return reg


def test_prune_and_gc_free_exactly_the_unreferenced_blobs(crowded: Registry) -> None:
    reg = crowded
    lines = reg.prune("fraud", keep_last=10, reason="keep the last 10")
    kept = {line["version"]: line["why"] for line in lines if line["action"] == "kept"}
    assert kept == {
        "default/fraud:5": "it was in production within the retention window (10 years)",
        "default/fraud:7": "it is under a legal hold",
        "default/fraud:50": "it is in production",
    }
    assert sum(1 for line in lines if line["action"] == "deleted") == 190 - 3
    # what must survive, recomputed from the public API: every version whose artifact was
    # not deleted (manifest and files), and the stored snapshot (manifest and files)
    alive = {191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 5, 7, 50}
    live: set[str] = set()
    for n in alive:
        version = reg.get(f"fraud:{n}")
        live.add(version.artifact_digest)
        live.update(f.digest for f in reg.manifest(f"fraud:{n}").files)
    snap = reg.snapshots(name="claims")[0]
    live.add(snap.digest)
    csv = Path(reg.settings.home).parent / "data" / "claims.csv"
    live.add("sha256:" + hashlib.sha256(csv.read_bytes()).hexdigest())
    files = _blob_files(reg)
    assert live <= set(files)
    garbage = set(files) - live
    assert garbage  # versions 1-190 (bar 5 and 7) held their own bytes

    _age_everything(reg, 7200)
    in_flight = reg._ctx.blobs.put_bytes(b"an upload whose metadata is not committed yet").digest

    dry = reg.gc(dry_run=True)
    assert dry["blobs"] == len(garbage) and set(_blob_files(reg)) == set(files) | {in_flight}
    assert dry["per_model"]["default/fraud"]["blobs"] == len(garbage)

    done = reg.gc()
    assert done["blobs"] == len(garbage) and done["kept_young"] == 1
    assert set(_blob_files(reg)) == live | {in_flight}
    for n in alive:  # every surviving version still pulls, verified
        reg.pull(f"fraud:{n}", reg.settings.home / "out" / str(n))
    with pytest.raises(NotFound, match=r"was deleted at .* by alice .*keep the last 10"):
        reg.pull("fraud:1", reg.settings.home / "out" / "gone")
    assert reg.get("fraud:1").number == 1  # the record stays
    from modelvault.service.snapshots import materialize

    assert (materialize(reg._ctx, snap) / "claims.csv").read_bytes() == csv.read_bytes()
    assert reg.audit(action="gc.sweep")[-1].after["blobs"] == len(garbage)  # type: ignore[index]
    assert reg.verify_audit().ok
    # a second sweep finds nothing; with no grace the abandoned upload goes too
    assert reg.gc()["blobs"] == 0
    assert reg.gc(grace_seconds=0)["blobs"] == 1
    assert in_flight not in _blob_files(reg)


def test_a_reused_blob_counts_as_fresh(reg: Registry, tmp_path: Path) -> None:
    reg.register(
        "m",
        write_model(tmp_path, "a", b"same bytes"),
        capture_environment=False,
        capture_code=False,
    )
    reg.register(
        "m", write_model(tmp_path, "b", b"other"), capture_environment=False, capture_code=False
    )
    reg.delete_artifact("m:1", reason="obsolete")
    _age_everything(reg, 7200)
    # a registration of the same bytes starts (the blob is reused, not rewritten) ...
    reg._ctx.blobs.put_file(write_model(tmp_path, "c", b"same bytes") / "model.bin")
    # ... so gc, running before its metadata commits, leaves it alone
    assert reg.gc()["kept_young"] >= 1
    reg.register(
        "m",
        write_model(tmp_path, "c", b"same bytes"),
        capture_environment=False,
        capture_code=False,
    )
    reg.pull("m:3", tmp_path / "out")


def test_protected_artifacts_cannot_be_deleted(crowded: Registry) -> None:
    with pytest.raises(Conflict, match="in production"):
        crowded.delete_artifact("fraud:50", reason="x")
    with pytest.raises(Conflict, match="legal hold"):
        crowded.delete_artifact("fraud:7", reason="x")
    with pytest.raises(Conflict, match="retention window"):
        crowded.delete_artifact("fraud:5", reason="x")
    with pytest.raises(InvalidInput, match="--reason"):
        crowded.delete_artifact("fraud:9", reason="")
    crowded.set_alias("fraud", "champion", "9")
    with pytest.raises(Conflict, match="alias 'champion' points to it"):
        crowded.delete_artifact("fraud:9", reason="x")
    crowded.set_alias("fraud", "champion", "200")
    crowded.delete_artifact("fraud:9", reason="obsolete")
    with pytest.raises(Conflict, match="already deleted"):
        crowded.delete_artifact("fraud:9", reason="again")
    crowded.release_hold("fraud:7", reason="case closed")
    assert crowded.holds() == []
    crowded.delete_artifact("fraud:7", reason="no longer held")
    actions = [e.action for e in crowded.audit(model="fraud")][-5:]
    assert actions == [
        "alias.set",
        "alias.set",
        "version.delete_artifact",
        "hold.remove",
        "version.delete_artifact",
    ]


def test_a_hold_outlives_its_model_being_pruned_to_nothing(crowded: Registry) -> None:
    crowded.prune("fraud", keep_last=1)
    assert [h["version"] for h in crowded.holds()] == ["default/fraud:7"]
    crowded.pull("fraud:7", crowded.settings.home / "held")


def test_gc_cli(cli: object, tmp_path: Path) -> None:
    run = cli.run  # type: ignore[attr-defined]
    for n in (1, 2, 3):
        assert run("register", "m", str(write_model(tmp_path, f"v{n}", b"%d" % n)))[0] == 0
    code, out, _ = run("prune", "m", "--keep-last", "1", "--dry-run")
    assert code == 0 and out.count("would delete") == 2
    assert run("prune", "m", "--keep-last", "1", "--reason", "tidy")[0] == 0
    code, _, err = run("gc", "--dry-run", "--grace", "0s")
    assert code == 0 and "would free" in err
    code, _, err = run("gc", "--grace", "0s")
    assert code == 0 and "freed" in " ".join(err.split())
    code, _, err = run("gc", "--grace", "soon")
    assert code == 2 and "Traceback" not in err
    code, _, err = run("hold", "add", "m:3", "--reason", "audit")
    assert code == 0
    code, out, _ = run("hold", "list")
    assert "default/m:3" in out
    code, _, err = run("delete-artifact", "m:3", "--reason", "x")
    assert code == 5 and "legal hold" in " ".join(err.split())


def test_the_retention_policy_file_keeps_the_last_the_best_and_the_protected(
    reg: Registry, as_user: Opener, clock: object, tmp_path: Path
) -> None:
    bob = as_user("bob")
    for n in range(1, 31):
        model = write_model(tmp_path / "r", f"v{n}", b"r%d" % n)
        auc = 0.99 if n == 3 else 0.5 + n / 100
        reg.register(
            "fraud", model, metrics={"auc": auc}, capture_environment=False, capture_code=False
        )
    reg.promote("fraud:20", "staging")
    bob.approve("fraud:20")
    reg.promote("fraud:20", "production", reason="launch")
    policy = Path(reg.settings.retention)
    policy.write_text(
        '[defaults]\nkeep_last = 5\nkeep_top = { metric = "auc", k = 2 }\n'
        '[models."default/other"]\nkeep_last = 1\n'
    )
    dry = reg.apply_retention(dry_run=True)
    assert {x["version"] for x in dry if x["action"] == "kept"} == {"default/fraud:20"}
    done = reg.apply_retention()
    deleted = {int(x["version"].rsplit(":", 1)[1]) for x in done if x["action"] == "deleted"}
    # kept: the newest 5 (26-30), the best 2 by auc (3, and 30 among the newest), production 20
    assert deleted == set(range(1, 31)) - {26, 27, 28, 29, 30, 3, 20}
    assert reg.apply_retention() == [
        {"version": "default/fraud:20", "action": "kept", "why": "it is in production"}
    ]
    # a candidate past its time to live goes even when it is among the newest
    clock.advance(days=100)  # type: ignore[attr-defined]
    policy.write_text("[defaults]\nkeep_last = 5\ncandidate_ttl_days = 90\n")
    gone = {x["version"] for x in reg.apply_retention() if x["action"] == "deleted"}
    assert gone == {f"default/fraud:{n}" for n in (3, 26, 27, 28, 29, 30)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults]\nkeep_last = 0\n", "keep_last must be a number ≥ 1"),
        ("[defaults]\nkeep = 3\n", "unknown key 'keep'"),
        ("[default]\nkeep_last = 3\n", "unknown section 'default'"),
        ('[models."fraud"]\nkeep_last = 3\n', "must name PROJECT/MODEL"),
        ("[defaults]\nkeep_top = 3\n", "keep_top must be"),
        ("[defaults]\nproduction_window_days = 0\n", "production_window_days must be"),
        ("[defaults\n", "retention.toml"),
    ],
)
def test_a_bad_retention_policy_is_one_clear_error(reg: Registry, text: str, message: str) -> None:
    Path(reg.settings.retention).parent.mkdir(parents=True, exist_ok=True)
    Path(reg.settings.retention).write_text(text)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        reg.apply_retention()


def test_the_retention_window_is_configurable(
    reg: Registry, as_user: Opener, clock: object, tmp_path: Path
) -> None:
    bob = as_user("bob")
    for n in (1, 2, 3):
        reg.register(
            "fraud",
            write_model(tmp_path, f"w{n}", b"w%d" % n),
            capture_environment=False,
            capture_code=False,
        )
    for n in (1, 2):
        reg.promote(f"fraud:{n}", "staging")
        bob.approve(f"fraud:{n}")
        reg.promote(f"fraud:{n}", "production", reason="launch")
    # without a policy file: 10 years
    clock.advance(days=365 * 9)  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match=re.escape("retention window (10 years)")):
        reg.delete_artifact("fraud:1", reason="old")
    policy = Path(reg.settings.retention)
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text('[defaults]\nkeep_last = 1\n[models."default/fraud"]\nkeep_last = 1\n')
    assert [x["action"] for x in reg.apply_retention(dry_run=True)] == ["kept", "kept"]
    # a longer window for this model keeps version 1 past 10 years ...
    policy.write_text(
        '[defaults]\nproduction_window_days = 30\n[models."default/fraud"]\nkeep_last = 1\n'
        "production_window_days = 7300\n"
    )
    clock.advance(days=365 * 2)  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match=re.escape("retention window (20 years)")):
        reg.delete_artifact("fraud:1", reason="old")
    # ... a shorter one lets it go once it is out of the window, never while inside it
    policy.write_text("[defaults]\nkeep_last = 1\nproduction_window_days = 30\n")
    lines = {x["version"]: x for x in reg.apply_retention()}
    assert lines["default/fraud:1"]["action"] == "deleted"
    assert lines["default/fraud:2"] == {
        "version": "default/fraud:2",
        "action": "kept",
        "why": "it is in production",
    }
    reg.register(
        "fraud", write_model(tmp_path, "w4", b"w4"), capture_environment=False, capture_code=False
    )
    reg.promote("fraud:4", "staging")
    bob.approve("fraud:4")
    reg.promote("fraud:4", "production", reason="replace 2")
    clock.advance(days=29)  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match=re.escape("retention window (30 days)")):
        reg.delete_artifact("fraud:2", reason="old")
    clock.advance(days=2)  # type: ignore[attr-defined]
    reg.delete_artifact("fraud:2", reason="out of the window")
    assert reg.audit(action="version.delete_artifact")[-1].subject == "default/fraud:2"


def test_a_version_once_deployed_stays_for_the_window(
    reg: Registry, clock: object, tmp_path: Path
) -> None:
    from .deploy_helpers import register_model

    for c in (1.0, 0.5):
        register_model(reg, tmp_path, "fraud", c)
    reg.deploy_release("fraud:1", "development")
    reg.deploy("fraud", "development", {"release": "fraud:2", "standby": "0s"})
    with pytest.raises(Conflict, match="a deployment serves it"):
        reg.delete_artifact("fraud:2", reason="x")
    policy = Path(reg.settings.retention)
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("[defaults]\nproduction_window_days = 30\n")
    clock.advance(days=29)  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match=re.escape("deployed within the retention window (30")):
        reg.delete_artifact("fraud:1", reason="x")
    clock.advance(days=2)  # type: ignore[attr-defined]
    reg.delete_artifact("fraud:1", reason="served long ago")
