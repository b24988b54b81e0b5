"""SIGKILL at random moments while registering a 200 MB file leaves no trace of a partial
version, no blob with wrong content under its final name, and a verifying audit chain."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .workers import open_registry

SIZE = 200 * 1024 * 1024
TRIALS = 20


def _blob_files(home: Path) -> list[Path]:
    root = home / "blobs" / "sha256"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _check_store(home: Path) -> int:
    for blob in _blob_files(home):
        sha = hashlib.sha256()
        with open(blob, "rb") as fh:
            while chunk := fh.read(1 << 22):
                sha.update(chunk)
        assert sha.hexdigest() == blob.name, f"blob {blob} holds the wrong bytes"
    reg = open_registry(str(home), "checker")
    try:
        assert reg.verify_audit().ok
        versions = reg.versions("big") if reg.models() else []
        for v in versions:
            manifest = reg.manifest(v.ref)
            for f in manifest.files:
                assert (home / "blobs" / "sha256" / f.digest[7:9] / f.digest[7:]).exists()
        registered = [e for e in reg.audit(limit=None) if e.action == "version.register"]
        assert len(registered) == len(versions)
        return len(versions)
    finally:
        reg.close()


def _start(home: Path, big: Path) -> subprocess.Popen[bytes]:
    """Start a registering process and return once it is about to register."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.workers", str(home), str(big)],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


@pytest.mark.slow
def test_sigkill_during_registration(tmp_path: Path) -> None:
    home = tmp_path / "home"
    open_registry(str(home), "setup").init()
    rng = random.Random(1234)
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    # measure one undisturbed registration to aim the kills across its whole duration
    with open(big, "wb") as fh:
        for _ in range(SIZE >> 20):
            fh.write(block)
    proc = _start(home, big)
    t0 = time.perf_counter()
    assert proc.wait() == 0
    duration = time.perf_counter() - t0
    assert proc.stdout is not None
    proc.stdout.close()
    completed = _check_store(home)
    assert completed == 1
    killed = 0
    for trial in range(TRIALS):
        with open(big, "r+b") as fh:  # new bytes every trial, so every trial writes blobs
            fh.write(b"trial %06d" % trial)
        proc = _start(home, big)
        time.sleep(rng.uniform(0.0, duration * 1.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        completed = _check_store(home)
    assert killed >= TRIALS // 2, f"only {killed} of {TRIALS} trials were killed mid-way"
    assert 1 <= completed <= TRIALS + 1
