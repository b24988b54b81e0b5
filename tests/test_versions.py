"""Registering versions: the immutable record, content addressing, capture, and bad input."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from modelvault import AlreadyExists, InvalidInput, NotFound, Registry
from modelvault.blobs import open_blob_store
from modelvault.canonical import canonical_json, sha256_digest
from modelvault.store import schema

from .backends import engine_for
from .conftest import write_model

pytestmark = pytest.mark.contract


def _rows(reg: Registry, table: str) -> int:
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        n = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(n)


def test_register_records_everything(reg: Registry, model_dir: Path) -> None:
    v = reg.register(
        "fraud",
        model_dir,
        params={"lr": 0.1, "depth": 6, "algo": "gbm", "balanced": True},
        metrics={"auc": 0.91, "f1": 0.7},
        tags={"team": "risk"},
        label="1.0.0",
        description="first",
        seed=42,
    )
    assert (v.model, v.number, v.stage, v.label) == ("fraud", 1, "development", "1.0.0")
    assert v.file_count == 2
    assert v.size == 2000 + len('{"layers": 3}')
    got = reg.get("fraud:1")
    assert got == v
    assert dict(got.params) == {"lr": 0.1, "depth": 6, "algo": "gbm", "balanced": True}
    assert dict(got.metrics) == {"auc": 0.91, "f1": 0.7}
    assert got.environment is not None
    assert got.environment.seed == 42
    assert got.environment.package_count > 10
    assert got.created_by == "alice"
    assert reg.get("fraud:1.0.0").number == 1
    assert reg.get("fraud").number == 1
    manifest = reg.manifest("fraud:1")
    assert [f.path for f in manifest.files] == ["sub/config.json", "weights.bin"]


def test_version_digest_covers_the_stored_record(reg: Registry, model_dir: Path) -> None:
    v = reg.register("fraud", model_dir, params={"a": 1})
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        record = conn.execute(select(schema.versions.c.record)).scalar_one()
    engine.dispose()
    assert sha256_digest(record.encode()) == v.digest
    assert canonical_json(__import__("json").loads(record)) == record.encode()


def test_numbers_are_sequential_per_model(reg: Registry, tmp_path: Path) -> None:
    for i in range(3):
        assert reg.register("a", write_model(tmp_path, f"a{i}", b"x%d" % i)).number == i + 1
    assert reg.register("b", write_model(tmp_path, "b0", b"y")).number == 1
    assert [v.number for v in reg.versions("a")] == [1, 2, 3]
    assert [(m.name, m.latest_version) for m in reg.models()] == [("a", 3), ("b", 1)]


def test_source_can_change_after_registration(reg: Registry, tmp_path: Path) -> None:
    src = write_model(tmp_path, "m", b"original bytes")
    reg.register("m", src)
    (src / "model.bin").write_bytes(b"changed!")
    out = reg.pull("m:1", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"original bytes"
    assert out.files == ("model.bin",)


def _blob_usage(home: Path) -> tuple[int, int]:
    files = [p for p in (home / "blobs" / "sha256").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def test_same_bytes_are_stored_once(reg: Registry, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    reg.register("m", write_model(tmp_path, "one", payload), capture_environment=False)
    before = _blob_usage(reg.settings.home)
    reg.register("m", write_model(tmp_path, "two", payload), capture_environment=False)
    reg.register("other", write_model(tmp_path, "three", payload), capture_environment=False)
    assert _blob_usage(reg.settings.home) == before
    assert reg.get("m:2").artifact_digest == reg.get("m:1").artifact_digest


def test_label_must_be_unique_and_semver(reg: Registry, model_dir: Path) -> None:
    reg.register("m", model_dir, label="1.2.0")
    with pytest.raises(AlreadyExists, match=r"label 1\.2\.0 is already m:1"):
        reg.register("m", model_dir, label="1.2.0")
    with pytest.raises(InvalidInput, match="not a semantic version"):
        reg.register("m", model_dir, label="v1")
    assert [v.number for v in reg.versions("m")] == [1]


def test_parents_and_components_are_pinned(reg: Registry, tmp_path: Path) -> None:
    reg.register("ranker", write_model(tmp_path, "r1", b"r1"))
    reg.register("ranker", write_model(tmp_path, "r2", b"r2"))
    reg.set_alias("ranker", "champion", "1")
    reg.register("retriever", write_model(tmp_path, "q", b"q"))
    sys_v = reg.register("search", kind="system", components=["ranker@champion", "retriever:1"])
    assert sys_v.components == ("default/ranker:1", "default/retriever:1")
    child = reg.register("ranker", write_model(tmp_path, "r3", b"r3"), parents=["ranker"])
    assert child.parents == ("default/ranker:2",)
    with pytest.raises(InvalidInput, match="only system versions"):
        reg.register("ranker", write_model(tmp_path, "r4", b"r4"), components=["ranker:1"])
    with pytest.raises(NotFound):
        reg.register("search", kind="system", components=["ranker:99"])


def test_config_versions_refuse_floating_aliases(reg: Registry, tmp_path: Path) -> None:
    good = tmp_path / "prompt.json"
    good.write_text(
        '{"provider": "openai", "model": "gpt-4o-2024-08-06", "temperature": 0.2,'
        ' "prompt": "Classify: {x}"}'
    )
    v = reg.register("classifier-prompt", good, kind="config")
    assert v.config is not None
    assert v.config["temperature"] == 0.2
    bad = tmp_path / "bad.toml"
    bad.write_text('prompt = "x"\n[llm]\nmodel = "claude-latest"\n')
    with pytest.raises(InvalidInput, match=r"floating model alias \(llm\.model=claude-latest\)"):
        reg.register("classifier-prompt", bad, kind="config")
    assert [x.number for x in reg.versions("classifier-prompt")] == [1]
    with pytest.raises(InvalidInput, match="holds config versions"):
        reg.register("classifier-prompt", write_model(tmp_path, "w", b"w"))


def test_inference_config_reference_must_be_a_config(reg: Registry, tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"model": "m-2024-01-01", "temperature": 0}')
    reg.register("cfg", cfg, kind="config")
    reg.register("clf", write_model(tmp_path, "a", b"a"))
    v = reg.register("clf", write_model(tmp_path, "b", b"b"), inference_config="cfg:1")
    assert v.inference_config == "default/cfg:1"
    with pytest.raises(InvalidInput, match="is not a config version"):
        reg.register("clf", write_model(tmp_path, "c", b"c"), inference_config="clf:1")


def test_code_is_captured_inside_a_git_work_tree(reg: Registry, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, env=env, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('v1')\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    git("remote", "add", "origin", "https://example.com/team/fraud.git")
    commit = git("rev-parse", "HEAD")
    clean = reg.register("m", write_model(tmp_path, "m1", b"1"), code_dir=repo)
    assert clean.code is not None
    assert (clean.code.commit, clean.code.branch, clean.code.dirty) == (commit, "main", False)
    assert clean.code.remote == "https://example.com/team/fraud.git"
    (repo / "train.py").write_text("print('v2')\n")
    dirty = reg.register("m", write_model(tmp_path, "m2", b"2"), code_dir=repo)
    assert dirty.code is not None and dirty.code.dirty and dirty.code.diff_digest
    blobs = open_blob_store(reg.settings.blobs, reg.settings)  # wherever the registry keeps them
    diff_text = blobs.read_bytes(dirty.code.diff_digest).decode()
    assert "+print('v2')" in diff_text
    outside = reg.register("m", write_model(tmp_path, "m3", b"3"), code_dir=tmp_path / "m3")
    assert outside.code is None


def test_datasets_are_recorded_pinned(reg: Registry, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    v = reg.register(
        "m",
        write_model(tmp_path, "m", b"m"),
        datasets=[
            f"train={data}",
            "s3://bucket/claims.parquet?versionId=abc123",
            "sha256:" + "a" * 64,
        ],
    )
    systems = [(d.name, d.system) for d in v.datasets]
    assert systems == [("train", "modelvault"), (None, "s3"), (None, "modelvault")]
    assert v.datasets[0].digest and v.datasets[0].digest.startswith("sha256:")
    before = _blob_usage(reg.settings.home)
    other = tmp_path / "other-data"
    other.mkdir()
    (other / "x.csv").write_text("fresh")
    with pytest.raises(InvalidInput, match="unsupported scheme"):
        reg.register("m", write_model(tmp_path, "o", b"o"), datasets=[str(other), "nope://x"])
    assert _blob_usage(reg.settings.home) == before  # the valid path was not snapshotted
    with pytest.raises(InvalidInput, match="versionId"):
        reg.register("m", write_model(tmp_path, "n", b"n"), datasets=["s3://bucket/claims.parquet"])


def _nothing_written(reg: Registry) -> None:
    reg.init()  # bad input may be refused before the store even exists
    assert _rows(reg, "mv_versions") == 0
    # (through a server, creating the test's users and tokens is audited too)
    assert _rows(reg, "mv_audit_events WHERE action NOT IN ('user.create', 'token.create')") == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "Bad Name"}, "invalid model name"),
        ({"model": "x" * 65}, "invalid model name"),
        ({"model": "-lead"}, "invalid model name"),
        ({"params": {"p": "x" * 6001}}, "limit is 6000"),
        ({"params": {"bad key": 1}}, "invalid param key"),
        ({"params": {"p": [1, 2]}}, "has type list"),
        ({"metrics": {"auc": float("nan")}}, "must be finite"),
        ({"metrics": {"auc": "high"}}, "must be a number"),
        ({"tags": {"t": 3}}, "must be text"),
        ({"description": "d" * 20001}, "limit is 20000"),
        ({"kind": "weights"}, "unknown kind"),
        ({"flavor": "tensorflow"}, "unknown flavor"),
        ({"datasets": ["nope://x"]}, "unsupported scheme"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    reg: Registry, model_dir: Path, kwargs: dict[str, object], message: str
) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by every backend's run
    model = str(kwargs.pop("model", "m"))
    with pytest.raises(InvalidInput, match=message):
        reg.register(model, model_dir, **kwargs)  # type: ignore[arg-type]
    _nothing_written(reg)


def test_bad_paths_are_refused_and_nothing_written(reg: Registry, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="empty"):
        reg.register("m", empty)
    with pytest.raises(InvalidInput, match="does not exist"):
        reg.register("m", tmp_path / "missing")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "model.bin").write_bytes(b"m")
    (linked / "escape").symlink_to(outside)
    with pytest.raises(InvalidInput, match="escape"):
        reg.register("m", linked)
    _nothing_written(reg)
    blob_dir = reg.settings.home / "blobs" / "sha256"
    assert not blob_dir.exists() or not any(p.is_file() for p in blob_dir.rglob("*"))


def test_unreadable_file_is_refused(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = write_model(tmp_path, "locked", b"m")
    locked = str(d / "model.bin")
    real_open = os.open

    def deny(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if str(path) == locked:  # root reads mode-000 files, so deny the way the OS would
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(InvalidInput, match=r"cannot read model\.bin: Permission denied"):
        reg.register("m", d)
    monkeypatch.undo()
    _nothing_written(reg)


def test_special_files_are_refused(reg: Registry, tmp_path: Path) -> None:
    d = write_model(tmp_path, "fifo", b"m")
    os.mkfifo(d / "pipe")
    with pytest.raises(InvalidInput, match="pipe"):
        reg.register("m", d)
    _nothing_written(reg)


def test_version_count_matches_numbers(reg: Registry, tmp_path: Path) -> None:
    for i in range(5):
        reg.register("m", write_model(tmp_path, f"v{i}", bytes([i])), capture_environment=False)
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        numbers = (
            conn.execute(select(schema.versions.c.number).order_by(schema.versions.c.number))
            .scalars()
            .all()
        )
        count = conn.execute(select(func.count()).select_from(schema.versions)).scalar_one()
    engine.dispose()
    assert numbers == [1, 2, 3, 4, 5]
    assert count == 5
