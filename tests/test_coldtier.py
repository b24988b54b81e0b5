"""The cold tier: retention apply moves artifacts there (copied, verified, recorded, then the
hot copies go), pull restores them verified, a corrupt cold copy restores nothing, and gc never
touches the cold store; with the cold store on a directory and on S3."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from modelvault import IntegrityError, InvalidInput, Registry, Settings
from modelvault.blobs import open_blob_store
from modelvault.blobs.local import LocalBlobStore
from modelvault.store import schema
from modelvault.timeutil import to_text

from .conftest import FakeClock, write_model
from .s3_helpers import REGION, overwrite, raw_client

Opener = Callable[[str], Registry]


def _hot(reg: Registry) -> dict[str, Path]:
    root = Path(reg.settings.blobs.removeprefix("file://")) / "sha256"
    return {f"sha256:{p.name}": p for p in root.rglob("*") if p.is_file()}


def _age(reg: Registry, seconds: float = 7200) -> None:
    old = time.time() - seconds
    for path in _hot(reg).values():
        os.utime(path, (old, old))


def _registry(settings: Settings, clock: FakeClock, cold: str, **extra: str) -> Registry:
    return Registry(settings=replace(settings, cold_blobs=cold, **extra), clock=clock)


@pytest.fixture
def cold_dir(tmp_path: Path) -> Path:
    return tmp_path / "cold"


@pytest.fixture
def coldreg(settings: Settings, clock: FakeClock, cold_dir: Path) -> Iterator[Registry]:
    # blob files here (what _hot and _age see); test_blobs_kept_inline_... covers the rows
    reg = _registry(settings, clock, str(cold_dir), inline_blob_max="0")
    yield reg
    reg.close()


def _three(reg: Registry, tmp_path: Path) -> dict[int, bytes]:
    """fraud:1 and fraud:3 hold the same bytes; fraud:2 its own."""
    contents = {1: b"weights one", 2: b"weights two", 3: b"weights one"}
    for n, content in contents.items():
        reg.register(
            "fraud",
            write_model(tmp_path / "src", f"v{n}", content),
            capture_environment=False,
            capture_code=False,
        )
    policy = Path(reg.settings.retention)
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("[defaults]\nkeep_last = 1\n")
    return contents


def _file_digest(reg: Registry, ref: str) -> str:
    return reg.manifest(ref).files[0].digest


def test_archive_moves_the_bytes_and_pull_restores_them_verified(
    coldreg: Registry, cold_dir: Path, tmp_path: Path
) -> None:
    reg = coldreg
    contents = _three(reg, tmp_path)
    two = _file_digest(reg, "fraud:2")
    two_manifest = reg.get("fraud:2").artifact_digest
    assert reg.apply_retention(dry_run=True) == [
        {"version": "default/fraud:2", "action": "would archive", "why": "older than the last 1"},
        {"version": "default/fraud:1", "action": "would archive", "why": "older than the last 1"},
    ]
    assert reg.archive_of("fraud:2") is None
    _age(reg)
    lines = reg.apply_retention()
    assert [x["action"] for x in lines] == ["archived", "archived"]
    cold = LocalBlobStore(cold_dir)
    hot = _hot(reg)
    # fraud:2's blobs left the hot store; fraud:1's are fraud:3's too, so they stay
    assert two not in hot and two_manifest not in hot
    assert cold.exists(two) and cold.verify(two) and cold.exists(two_manifest)
    assert _file_digest(reg, "fraud:1") in hot
    archived = reg.archive_of("fraud:2")
    assert archived is not None
    assert archived["location"] == str(cold_dir) and archived["archived_by"] == "alice"
    event = reg.audit(action="version.archive")[0]
    assert (
        event.subject == "default/fraud:2"
        and event.reason == "retention policy: older than the last 1"
    )
    assert reg.apply_retention() == []  # nothing left to move
    # gc sees no hot copy to keep, and never touches the cold store
    reg.gc(grace_seconds=0)
    assert cold.exists(two)

    out = reg.pull("fraud:2", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == contents[2]
    assert out.files == ("model.bin",)
    assert two in _hot(reg) and reg.archive_of("fraud:2") is None
    restored = reg.audit(action="artifact.restore")
    assert [e.subject for e in restored] == ["default/fraud:2"]
    assert restored[0].after == {
        "version": 2,
        "artifact_digest": two_manifest,
        "blobs": 2,
        "bytes": len(contents[2]) + cold.size(two_manifest),
    }
    # restored means hot again: gc keeps it; the cold copy stays too
    reg.gc(grace_seconds=0)
    assert two in _hot(reg) and cold.exists(two)
    assert reg.restore("fraud:2")["restored"] is False
    assert reg.verify_audit().ok


def test_blobs_kept_inline_are_archived_swept_and_restored_verified(
    settings: Settings, clock: FakeClock, cold_dir: Path, tmp_path: Path
) -> None:
    t = schema.inline_blobs
    with _registry(settings, clock, str(cold_dir)) as reg:  # small files are rows here
        contents = _three(reg, tmp_path)
        two, two_manifest = _file_digest(reg, "fraud:2"), reg.get("fraud:2").artifact_digest

        def rows() -> set[str]:
            with reg._ctx.store.read() as conn:
                return set(conn.execute(select(t.c.digest)).scalars())

        assert {two, two_manifest} <= rows() and not _hot(reg)
        with reg._ctx.store.write() as conn:  # stored two hours ago
            conn.execute(update(t).values(stored_at=to_text(clock.now - timedelta(hours=2))))
        assert [x["action"] for x in reg.apply_retention()] == ["archived", "archived"]
        cold = LocalBlobStore(cold_dir)
        assert cold.verify(two) and cold.verify(two_manifest)
        assert two not in rows() and two_manifest not in rows()  # swept from the hot side
        assert _file_digest(reg, "fraud:1") in rows()  # fraud:3 still needs it
        reg.pull("fraud:2", tmp_path / "out")
        assert (tmp_path / "out" / "model.bin").read_bytes() == contents[2]
        assert reg.archive_of("fraud:2") is None and reg._ctx.blobs.verify(two)


def test_a_corrupt_cold_copy_fails_the_restore_and_leaves_hot_untouched(
    coldreg: Registry, cold_dir: Path, tmp_path: Path
) -> None:
    reg = coldreg
    _three(reg, tmp_path)
    _age(reg)
    reg.apply_retention()
    two = _file_digest(reg, "fraud:2")
    path = LocalBlobStore(cold_dir).path_of(two)
    os.chmod(path, 0o644)
    path.write_bytes(b"weights twx")
    before = set(_hot(reg))
    with pytest.raises(
        IntegrityError, match=r"cold copy of blob .* is corrupt.*nothing was restored"
    ):
        reg.pull("fraud:2", tmp_path / "out")
    with pytest.raises(IntegrityError, match="nothing was restored"):
        reg.restore("fraud:2")
    assert set(_hot(reg)) == before
    assert reg.archive_of("fraud:2") is not None
    assert reg.audit(action="artifact.restore") == []
    assert not (tmp_path / "out" / "model.bin").exists()


def test_archive_after_days_moves_old_versions_but_not_what_is_served(
    coldreg: Registry, as_user: Opener, clock: FakeClock, tmp_path: Path
) -> None:
    reg = coldreg
    bob = as_user("bob")
    for n in (1, 2, 3):
        reg.register(
            "fraud",
            write_model(tmp_path / "src", f"v{n}", b"w%d" % n),
            capture_environment=False,
            capture_code=False,
        )
    reg.promote("fraud:2", "staging")
    bob.approve("fraud:2")
    reg.promote("fraud:2", "production", reason="launch")
    reg.hold("fraud:1", reason="litigation")
    policy = Path(reg.settings.retention)
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("[defaults]\nkeep_last = 10\narchive_after_days = 30\n")
    assert reg.apply_retention() == []
    clock.advance(days=31)
    # held versions move too: their bytes are kept, only colder; production stays hot
    assert reg.apply_retention(dry_run=True) == [
        {"version": "default/fraud:3", "action": "would archive", "why": "older than 30 days"},
        {"version": "default/fraud:1", "action": "would archive", "why": "older than 30 days"},
    ]
    _age(reg)
    assert [x["action"] for x in reg.apply_retention()] == ["archived", "archived"]
    reg.pull("fraud:1", tmp_path / "held")
    assert (tmp_path / "held" / "model.bin").read_bytes() == b"w1"
    # without a cold tier, archive_after_days is one clear error
    plain = Registry(settings=replace(reg.settings, cold_blobs=""), clock=clock)
    with pytest.raises(InvalidInput, match="archive_after_days needs a cold tier"):
        plain.apply_retention()
    plain.close()
    with pytest.raises(InvalidInput, match="another blob store"):
        Registry(settings=replace(reg.settings, cold_blobs=reg.settings.blobs)).apply_retention()


def test_the_cold_tier_on_s3(
    settings: Settings,
    clock: FakeClock,
    moto_endpoint: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    reg = _registry(
        settings,
        clock,
        f"s3://{s3_bucket}/cold",
        s3_endpoint_url=moto_endpoint,
        s3_region=REGION,
        s3_timeout="5",
        s3_max_attempts="3",
    )
    contents = _three(reg, tmp_path)
    _age(reg)
    reg.apply_retention()
    two = _file_digest(reg, "fraud:2")
    assert two not in _hot(reg)
    cold = open_blob_store(f"s3://{s3_bucket}/cold", reg.settings)
    assert cold.verify(two)
    keys = raw_client(moto_endpoint).list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert {k["Key"] for k in keys} >= {f"cold/sha256/{two[7:9]}/{two[7:]}"}
    reg.pull("fraud:2", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == contents[2]
    # archived again, then the S3 copy is tampered with: the restore refuses
    policy = Path(reg.settings.retention)
    policy.write_text("[defaults]\nkeep_last = 1\n")
    _age(reg)
    reg.apply_retention()
    assert two not in _hot(reg)
    overwrite(cold, two, b"tampered!!!")  # type: ignore[arg-type]
    before = set(_hot(reg))
    with pytest.raises(IntegrityError, match="nothing was restored"):
        reg.restore("fraud:2")
    assert set(_hot(reg)) == before
    reg.close()


def test_restore_cli(cli: object, tmp_path: Path, home: Path) -> None:
    run = cli.run  # type: ignore[attr-defined]
    cli.monkeypatch.setenv("MODELVAULT_COLD_BLOBS", str(tmp_path / "cold"))  # type: ignore[attr-defined]
    for n in (1, 2):
        assert run("register", "m", str(write_model(tmp_path, f"v{n}", b"%d" % n)))[0] == 0
    home.mkdir(parents=True, exist_ok=True)
    (home / "retention.toml").write_text("[defaults]\nkeep_last = 1\n")
    code, out, _ = run("retention", "apply", "--dry-run")
    assert code == 0 and "would archive" in out
    code, out, _ = run("retention", "apply")
    assert code == 0 and "archived" in out
    code, _, err = run("pull", "m:1")
    assert code == 2 and "--restore" in err
    code, _, err = run("pull", "m:1", "--restore")
    assert code == 0 and "restored default/m:1" in " ".join(err.split())
    code, _, err = run("restore", "m:1")
    assert code == 0 and "not archived" in err
    assert cli.json("pull", "m:2", str(tmp_path / "o"))["files"] == ["model.bin"]  # type: ignore[attr-defined]


def test_deploying_an_archived_version_restores_it_first(coldreg: Registry, tmp_path: Path) -> None:
    from .deploy_helpers import register_model

    reg = coldreg
    for c in (1.0, 0.5):
        register_model(reg, tmp_path, "fraud", c)
    policy = Path(reg.settings.retention)
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("[defaults]\nkeep_last = 1\n")
    _age(reg)
    assert [x["action"] for x in reg.apply_retention()] == ["archived"]
    assert reg.get("fraud:1").artifact_digest not in _hot(reg)
    reg.deploy_release("fraud:1", "development")
    assert reg.archive_of("fraud:1") is None
    assert [e.subject for e in reg.audit(action="artifact.restore")] == ["default/fraud:1"]
    # now served, it stays hot whatever the policy says
    assert reg.apply_retention() == [
        {"version": "default/fraud:1", "action": "kept", "why": "a deployment serves it"}
    ]
