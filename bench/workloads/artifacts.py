"""`artifacts`: register and pull one large file, next to `cp` and one-pass SHA-256 of it,
and registering identical bytes again (time, and bytes the store grew by)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.harness import Figures
from modelvault import Registry, Settings

FIGURES = {
    "sha256_mb_s": ("MB/s", "high"),
    "cp_mb_s": ("MB/s", "high"),
    "register_mb_s": ("MB/s", "high"),
    "pull_mb_s": ("MB/s", "high"),
    "pull_evicted_mb_s": ("MB/s", "high"),
    "sha256_evicted_mb_s": ("MB/s", "high"),
    "reregister_identical_s": ("s", "low"),
    "reregister_extra_bytes": ("B", "low"),
}


def sha256_file(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run(work: Path, quick: bool) -> Figures:
    from modelvault.blobs import LocalBlobStore

    size_mib = 64 if quick else 512
    size = size_mib << 20
    base = work / f"artifacts-{time.monotonic_ns()}"
    base.mkdir()
    src = base / "large.bin"
    with open(src, "wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1 << 20))
    sha256_file(src)  # warm, as right after training wrote it
    sha_s = _timed(lambda: sha256_file(src))
    cp_s = _timed(lambda: subprocess.run(["cp", str(src), str(base / "copy.bin")], check=True))
    (base / "copy.bin").unlink()
    home = base / "home"
    reg = Registry(settings=Settings.from_env(env={}, home=home, actor="bench"))
    reg.init()
    register_s = _timed(
        lambda: reg.register("large", src, capture_code=False, capture_environment=False)
    )
    blob = LocalBlobStore(home / "blobs").path_of(reg.manifest("large:1").files[0].digest)
    sha256_file(blob)
    pull_s = _timed(lambda: reg.pull("large:1", base / "pulled"))
    shutil.rmtree(base / "pulled")
    evict(blob)
    sha_evicted_s = _timed(lambda: sha256_file(blob))
    evict(blob)
    pull_evicted_s = _timed(lambda: reg.pull("large:1", base / "pulled"))
    before = _tree_bytes(home / "blobs")
    again_s = _timed(
        lambda: reg.register("large", src, capture_code=False, capture_environment=False)
    )
    extra = _tree_bytes(home / "blobs") - before
    reg.close()
    shutil.rmtree(base)
    mb = size / 1e6
    return {
        "sha256_mb_s": mb / sha_s,
        "cp_mb_s": mb / cp_s,
        "register_mb_s": mb / register_s,
        "pull_mb_s": mb / pull_s,
        "sha256_evicted_mb_s": mb / sha_evicted_s,
        "pull_evicted_mb_s": mb / pull_evicted_s,
        "reregister_identical_s": again_s,
        "reregister_extra_bytes": float(extra),
    }
