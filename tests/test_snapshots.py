"""Dataset snapshots: content digests, the per-file cache, change detection while hashing,
external references, diffs, and the CLI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelvault import InvalidInput, NotFound, Registry
from modelvault.filecache import HashCache
from modelvault.manifest import scan
from modelvault.treehash import _key, hash_file, hash_tree

from .clitool import CLI


def make_tree(root: Path, n: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = root / f"part{i % 2}"
        sub.mkdir(exist_ok=True)
        path = sub / f"f{i}.bin"
        path.write_bytes(f"row {i}\n".encode() * (i + 1))
    return root


def test_snapshot_digest_is_content_addressed(reg: Registry, tmp_path: Path) -> None:
    a = reg.snapshot(make_tree(tmp_path / "a"), name="claims")
    b = reg.snapshot(make_tree(tmp_path / "b"), name="claims")
    assert a.digest == b.digest  # same files, same digest, wherever they live
    assert (a.file_count, a.size) == (5, sum(len(f"row {i}\n") * (i + 1) for i in range(5)))
    assert len(reg.snapshots(name="claims")) == 1
    (tmp_path / "b" / "part0" / "f0.bin").write_bytes(b"changed")
    c = reg.snapshot(tmp_path / "b", name="claims")
    assert c.digest != a.digest
    assert reg.get_snapshot("claims").digest == c.digest  # a name means its newest snapshot
    assert reg.get_snapshot(f"claims@{a.digest}").digest == a.digest
    assert reg.get_snapshot(a.digest[:15]).digest == a.digest
    assert [e.action for e in reg.audit(action="dataset.*")] == ["dataset.snapshot"] * 2


def test_cache_skips_unchanged_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d")
    cache = HashCache(tmp_path / "cache.db")
    hashed: list[int] = []
    first = hash_tree(root, cache=cache, progress=hashed.append, racy_seconds=0)
    assert sum(hashed) == sum(e.size for e in first)
    hashed.clear()
    assert hash_tree(root, cache=cache, progress=hashed.append, racy_seconds=0) == first
    assert hashed == []  # nothing was read again
    target = root / "part1" / "f3.bin"
    target.write_bytes(b"changed!")
    third = hash_tree(root, cache=cache, progress=hashed.append, racy_seconds=0)
    assert sum(hashed) == len(b"changed!")  # only the changed file was read
    assert {e.path: e.digest for e in third}["part1/f3.bin"] == (
        "sha256:" + hashlib.sha256(b"changed!").hexdigest()
    )


def test_cache_is_not_fooled_by_restored_times(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d")
    cache = HashCache(tmp_path / "cache.db")
    first = hash_tree(root, cache=cache, racy_seconds=0)
    # same size, same mtime, same inode, other bytes: the ctime still moved
    target = root / "part0" / "f0.bin"
    info = target.stat()
    with open(target, "r+b") as fh:
        fh.write(b"R")
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    second = hash_tree(root, cache=cache, racy_seconds=0)
    assert second[0].digest != first[0].digest
    assert second[0].digest == "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest()


def test_files_younger_than_the_racy_window_are_not_cached(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    (root / "x.bin").write_bytes(b"new")  # mtime is now
    cache = HashCache(tmp_path / "cache.db")
    hash_tree(root, cache=cache)
    files = scan(root)
    assert cache.lookup([_key(files[0])]) == {}


def test_file_changing_while_hashed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (3 << 20))
    (before,) = [_key(f) for f in scan(path)]
    calls = []

    def grow(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            with open(path, "ab") as fh:
                fh.write(b"more")

    with pytest.raises(InvalidInput, match="changed while it was being hashed"):
        hash_file(path, "big.bin", before, grow)
    # replaced between the scan and the read: another inode
    replacement = tmp_path / "other.bin"
    replacement.write_bytes(b"y" * 10)
    os.replace(replacement, path)
    with pytest.raises(InvalidInput, match="changed while"):
        hash_file(path, "big.bin", before)


def test_unreadable_cache_does_not_break_snapshots(reg: Registry, tmp_path: Path) -> None:
    cache_dir = reg.settings.home / "cache"
    cache_dir.mkdir(parents=True)
    (cache_dir / "file-digests.db").write_bytes(b"this is not a database" * 100)
    snap = reg.snapshot(make_tree(tmp_path / "d"))
    assert snap.file_count == 5


def test_external_references(reg: Registry, tmp_path: Path) -> None:
    s3 = reg.snapshot_external("s3://bucket/claims.parquet?versionId=3HL4kqtJ", name="claims")
    assert (s3.system, s3.uri) == ("s3", "s3://bucket/claims.parquet?versionId=3HL4kqtJ")
    assert s3.digest.startswith("sha256:")
    lake = reg.snapshot_external("lakefs://repo/c0ffee1234/claims/")
    assert lake.system == "lakefs"
    dvc = tmp_path / "claims.dvc"
    dvc.write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: claims\n")
    pinned = reg.snapshot_external(f"dvc://{dvc}")
    assert pinned.digest == "md5:0123456789abcdef0123456789abcdef"
    with pytest.raises(InvalidInput, match="versionId"):
        reg.snapshot_external("s3://bucket/claims.parquet")
    with pytest.raises(InvalidInput, match="pin a commit"):
        reg.snapshot_external("hf://datasets/claims@main")


def test_diff_snapshots(reg: Registry, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", n=3)
    a = reg.snapshot(root, name="d")
    (root / "part0" / "f0.bin").write_bytes(b"edited")
    (root / "part1" / "f1.bin").unlink()
    (root / "new.bin").write_bytes(b"new")
    b = reg.snapshot(root, name="d")
    d = reg.diff_snapshots(a.digest, b.digest)
    assert [c.path for c in d.added] == ["new.bin"]
    assert [c.path for c in d.removed] == ["part1/f1.bin"]
    assert [c.path for c in d.changed] == ["part0/f0.bin"]
    assert reg.diff_snapshots(a.digest, a.digest).identical
    ext = reg.snapshot_external("delta://warehouse/claims@12")
    with pytest.raises(InvalidInput, match="external"):
        reg.diff_snapshots(a.digest, ext.digest)


def test_bad_snapshot_references(reg: Registry) -> None:
    with pytest.raises(NotFound):
        reg.get_snapshot("sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        reg.get_snapshot("missing")
    with pytest.raises(InvalidInput, match="at least 8 hex"):
        reg.get_snapshot("sha256:ab")
    with pytest.raises(InvalidInput):
        reg.snapshot(Path("/no/such/dir"))


def test_cli_snapshot_and_diff(cli: CLI, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", n=2)
    a = cli.json("data", "snapshot", str(root), "--name", "claims")
    (root / "extra.bin").write_bytes(b"1")
    b = cli.json("data", "snapshot", str(root), "--name", "claims")
    diff = cli.json("data", "diff", a["digest"], b["digest"])
    digest = "sha256:" + hashlib.sha256(b"1").hexdigest()
    assert diff["added"] == [{"path": "extra.bin", "a": None, "b": digest}]
    assert [s["digest"] for s in cli.json("data", "list")] == [b["digest"], a["digest"]]
    assert cli.json("data", "show", "claims")["digest"] == b["digest"]
    code, _, err = cli.run("data", "snapshot", "s3://bucket/key")
    assert code == 2 and err.startswith(
        "error: dataset 's3://bucket/key': an S3 object must be pinned"
    )
    code, _, err = cli.run("data", "show", "nope")
    assert code == 3 and "no snapshot nope" in err
