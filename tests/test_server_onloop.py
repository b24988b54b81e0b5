"""Registrations on the server's event loop: against SQLite and a local blob store they run
there, sparing the hand-off to the thread pool, unless their write would wait; then they go
to the pool, and the loop keeps answering everyone else."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from modelvault import Settings
from modelvault.server import onloop

from .conftest import write_model
from .server_fixtures import LiveServer, live_server, pool_calls


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    env = {"MODELVAULT_DB": f"sqlite:///{tmp_path / 'home' / 'r.db'}"}
    settings = Settings.from_env(env=env, home=tmp_path / "home", actor="alice")
    with live_server(settings) as live:
        yield live


def _writes_on_loop(server: LiveServer) -> list[bool]:
    """For each write committed from here on: whether it ran on the event loop's thread."""
    seen: list[bool] = []

    def record(_head: int | None) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a thread of the pool runs no loop
            seen.append(False)
        else:
            seen.append(True)

    server.registry._ctx.store.after_write.append(record)
    return seen


def test_a_registration_runs_on_the_event_loop_when_its_write_would_not_wait(
    sqlite_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = sqlite_server.client("alice")
    alice.register("warm", write_model(tmp_path, "w", b"warm"))  # the user, the environment
    on_loop = _writes_on_loop(sqlite_server)
    handed = pool_calls(monkeypatch, onloop)
    version = alice.register("m", write_model(tmp_path, "m", b"weights"))
    assert version.number == 1 and handed == [] and on_loop == [True]
    assert sqlite_server.local("alice").get("m:1").digest == version.digest


def test_a_registration_waiting_for_another_writer_waits_in_the_pool(
    sqlite_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another process (here: a connection of its own) holds the database: the registration
    # must not wait on the event loop, which would stop every other request with it
    alice = sqlite_server.client("alice")
    path = write_model(tmp_path, "m", b"weights")
    alice.register("warm", path)  # the token's user exists; the client has its environment
    on_loop = _writes_on_loop(sqlite_server)
    db = sqlite_server.registry._ctx.store.url[len("sqlite:///") :]
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    done: list[int] = []
    failed: list[BaseException] = []

    def register() -> None:
        try:
            done.append(alice.register("m", path).number)
        except BaseException as exc:  # reported by the assertion below
            failed.append(exc)

    handed = pool_calls(monkeypatch, onloop)
    worker = threading.Thread(target=register)
    try:
        worker.start()
        deadline = time.monotonic() + 10
        while not handed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(handed) == 1  # tried on the loop, found the lock held, went to the pool
        with httpx.Client(timeout=5) as probe:  # the loop answers meanwhile
            t0 = time.monotonic()
            assert probe.get(sqlite_server.url + "/healthz").status_code == 200
            assert time.monotonic() - t0 < 2
        time.sleep(0.2)
        assert not done and not failed  # still waiting for the lock
    finally:
        other.execute("ROLLBACK")
        other.close()
        worker.join(30)
    assert not failed and done == [1] and on_loop == [False]


def test_a_checkpoint_due_after_a_registration_on_the_loop_is_signed_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelvault.service import transparency

    signed_in: list[str] = []
    sign = transparency.checkpoint

    def recorded(*args: Any, **kwargs: Any) -> Any:
        signed_in.append(threading.current_thread().name)
        return sign(*args, **kwargs)

    monkeypatch.setattr(transparency, "checkpoint", recorded)
    env = {
        "MODELVAULT_DB": f"sqlite:///{tmp_path / 'home' / 'r.db'}",
        "MODELVAULT_CHECKPOINT_EVERY": "1",
    }
    settings = Settings.from_env(env=env, home=tmp_path / "home", actor="alice")
    with live_server(settings) as server:
        alice = server.client("alice")
        local = server.local("alice")
        before = _audit_head(server)
        alice.register("m", write_model(tmp_path, "m", b"weights"))
        head = _audit_head(server)
        assert head > before
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if max(c["tree_size"] for c in local.checkpoints()) >= head:
                break
            time.sleep(0.01)
        assert max(c["tree_size"] for c in local.checkpoints()) >= head
        assert signed_in[-1] == "modelvault-checkpoint"  # not the event loop's thread


def _audit_head(server: LiveServer) -> int:
    with server.registry._ctx.store.read() as conn:
        return int(conn.execute(text("SELECT seq FROM mv_audit_head")).scalar_one())


@pytest.mark.parametrize(
    ("dialect", "blobs", "expected"),
    [
        ("sqlite", "/srv/modelvault/blobs", True),
        ("sqlite", "file:///srv/modelvault/blobs", True),
        ("sqlite", "memory://", True),
        ("sqlite", "s3://bucket/prefix", False),
        ("sqlite", "S3://bucket/prefix", False),
        ("postgresql", "/srv/modelvault/blobs", False),
    ],
)
def test_only_writes_that_wait_locally_may_run_on_the_loop(
    dialect: str, blobs: str, expected: bool
) -> None:
    # PostgreSQL's statements and S3's requests are network round trips, which may wait on
    # another transaction's row lock or a slow store: those registrations use the pool
    assert onloop.waits_only_locally(dialect, blobs) is expected
