"""Faults: a full disk during a blob write, a database locked by another writer. The
operation fails with one clear error or waits, and nothing is half-written."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from modelvault import Registry, Settings, StoreError
from modelvault.blobs import copying

from .invariants import check_store


def _registry(home: Path, **env: str) -> Registry:
    return Registry(settings=Settings.from_env(env=env, home=home, actor="alice"))


def test_disk_full_while_storing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    reg = _registry(home)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 << 20))
    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(copying, "CHUNK", 1 << 20)
    with pytest.raises(StoreError, match=r"disk full|No space left"):
        reg.register("m", src, capture_code=False, capture_environment=False)
    monkeypatch.undo()
    assert not reg.models()
    assert list((home / "blobs" / "tmp").iterdir()) == []
    # after the disk has room again the same registration succeeds
    assert reg.register("m", src, capture_code=False, capture_environment=False).number == 1
    reg.close()
    check_store(home, verify_all_blobs=True)


def _hold_write_lock(db: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def test_locked_database_fails_clearly_after_the_busy_timeout(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = _registry(home, MODELVAULT_SQLITE_BUSY_MS="300")
    reg.init()
    src = tmp_path / "m.bin"
    src.write_bytes(b"weights")
    held = threading.Event()
    locker = threading.Thread(target=_hold_write_lock, args=(home / "registry.db", 2.0, held))
    locker.start()
    held.wait()
    with pytest.raises(StoreError, match="stayed locked by another writer"):
        reg.register("m", src, capture_code=False, capture_environment=False)
    locker.join()
    assert not reg.models()
    reg.close()
    check_store(home)


def test_locked_database_waits_for_a_short_lock(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = _registry(home, MODELVAULT_SQLITE_BUSY_MS="10000")
    reg.init()
    src = tmp_path / "m.bin"
    src.write_bytes(b"weights")
    held = threading.Event()
    locker = threading.Thread(target=_hold_write_lock, args=(home / "registry.db", 0.5, held))
    locker.start()
    held.wait()
    assert reg.register("m", src, capture_code=False, capture_environment=False).number == 1
    locker.join()
    reg.close()
    check_store(home)
