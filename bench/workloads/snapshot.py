"""`snapshot`: content snapshot of 20,000 files of 4 KiB plus one 1 GiB file through
`Registry.snapshot`, cold (empty digest cache) and after one small change, next to
`sha256sum` over the same bytes.

The data is written, then left alone for the snapshot's racy window (2 s): files changed
less than that before a snapshot are hashed but not cached (docs/tracking.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.harness import Figures
from modelvault import Registry, Settings
from modelvault.treehash import RACY_SECONDS

FIGURES = {
    "sha256sum_s": ("s", "low"),
    "snapshot_cold_s": ("s", "low"),
    "snapshot_warm_s": ("s", "low"),
}


def make_tree(root: Path, quick: bool) -> None:
    small, big_mib = (2000, 64) if quick else (20_000, 1024)
    for i in range(small):
        sub = root / f"d{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    with open(root / "big.bin", "wb") as fh:
        for _ in range(big_mib):
            fh.write(os.urandom(1 << 20))


def run(work: Path, quick: bool) -> Figures:
    base = work / f"snapshot-{time.monotonic_ns()}"
    data = base / "data"
    data.mkdir(parents=True)
    make_tree(data, quick)
    files = [str(p) for p in data.rglob("*") if p.is_file()]
    t0 = time.perf_counter()
    for i in range(0, len(files), 2000):
        subprocess.run(["sha256sum", *files[i : i + 2000]], check=True, capture_output=True)
    sha_s = time.perf_counter() - t0
    reg = Registry(settings=Settings.from_env(env={}, home=base / "home", actor="bench"))
    time.sleep(RACY_SECONDS + 0.1)
    t0 = time.perf_counter()
    first = reg.snapshot(data, name="data")
    cold_s = time.perf_counter() - t0
    (data / "d000" / "f00000.bin").write_bytes(os.urandom(4096))
    t0 = time.perf_counter()
    second = reg.snapshot(data, name="data")
    warm_s = time.perf_counter() - t0
    assert first.digest != second.digest
    reg.close()
    shutil.rmtree(base)
    return {"sha256sum_s": sha_s, "snapshot_cold_s": cold_s, "snapshot_warm_s": warm_s}
