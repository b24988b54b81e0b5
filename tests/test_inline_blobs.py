"""Small files sent inside a registration are kept in the metadata store, committed in their
version's own transaction (service/inlineblobs.py): no blob file or object, read back every
way a blob is, collected as blobs are."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from modelvault import InvalidInput, Registry, Settings, StoreError
from modelvault.service import inlineblobs, versions
from modelvault.store import schema
from modelvault.sync import push
from modelvault.timeutil import to_text

from .conftest import write_model
from .server_fixtures import LiveServer, live_server

LIMIT = 64 * 1024


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _rows(reg: Registry) -> dict[str, tuple[bytes, str]]:
    t = schema.inline_blobs
    with reg._ctx.store.read() as conn:
        rows = conn.execute(select(t.c.digest, t.c.data, t.c.stored_at)).all()
    return {str(d): (bytes(b), str(at)) for d, b, at in rows}


def _files(reg: Registry) -> object:
    return reg._ctx.blobs.inner  # type: ignore[attr-defined]


def test_a_small_file_sent_with_its_version_is_kept_with_it(
    server: LiveServer, tmp_path: Path
) -> None:
    alice = server.client("alice")
    weights = b"w" * LIMIT  # the largest kept inline by default
    v = alice.register("fraud", write_model(tmp_path, "m", weights), capture_code=False)
    rows = _rows(server.registry)
    assert rows[sha(weights)][0] == weights
    assert v.artifact_digest in rows  # the manifest, sent as text, too
    files = _files(server.registry)
    assert not files.exists(sha(weights)) and not files.exists(v.artifact_digest)  # type: ignore[attr-defined]
    # read back as any blob: pulled, downloaded, sized, verified, read by the server itself
    alice.pull("fraud:1", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == weights
    with server.api(server.token("alice")) as api:
        got = api.get(f"/blobs/{sha(weights)}")
        assert got.status_code == 200 and got.content == weights
        head = api.head(f"/blobs/{sha(weights)}")
        assert head.status_code == 200 and head.headers["content-length"] == str(LIMIT)
    blobs = server.registry._ctx.blobs
    assert blobs.exists(sha(weights)) and blobs.size(sha(weights)) == LIMIT
    assert blobs.verify(sha(weights)) and blobs.read_bytes(sha(weights)) == weights
    assert server.registry.manifest("fraud:1").files[0].digest == sha(weights)


def test_a_file_above_the_limit_is_a_blob_file(server: LiveServer, tmp_path: Path) -> None:
    weights = b"w" * (LIMIT + 1)  # still sent inline (remote.INLINE_FILE), stored apart
    server.client("alice").register(
        "fraud", write_model(tmp_path, "m", weights), capture_code=False
    )
    assert sha(weights) not in _rows(server.registry)
    assert _files(server.registry).exists(sha(weights))  # type: ignore[attr-defined]


def test_a_limit_of_zero_keeps_every_blob_a_file(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {"MODELVAULT_DB": f"sqlite:///{home}/r.db", "MODELVAULT_INLINE_BLOB_MAX": "0"}
    with live_server(Settings.from_env(env=env, home=home)) as server:
        server.client("alice").register(
            "fraud", write_model(tmp_path, "m", b"weights"), capture_code=False
        )
        assert _rows(server.registry) == {}
        assert _files(server.registry).exists(sha(b"weights"))  # type: ignore[attr-defined]


def test_a_wrong_limit_stops_the_server_start(tmp_path: Path) -> None:
    from modelvault.server.app import create_app

    home = tmp_path / "h"
    env = {"MODELVAULT_DB": f"sqlite:///{home}/r.db", "MODELVAULT_INLINE_BLOB_MAX": "lots"}
    with pytest.raises(InvalidInput, match="MODELVAULT_INLINE_BLOB_MAX must be a size"):
        create_app(Settings.from_env(env=env, home=home))


def test_bytes_and_version_commit_together_or_not_at_all(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = server.client("alice")

    def full(*args: object) -> None:
        raise StoreError("the metadata store is full")

    monkeypatch.setattr(inlineblobs, "insert", full)  # the version's rows went first
    with pytest.raises(StoreError, match="is full"):
        alice.register("fraud", write_model(tmp_path, "a", b"one"), capture_code=False)
    monkeypatch.undo()

    def refused(*args: object, **kwargs: object) -> None:
        raise StoreError("the audit log refused the event")

    monkeypatch.setattr(versions, "append", refused)  # the bytes went first
    with pytest.raises(StoreError, match="refused the event"):
        alice.register("fraud", write_model(tmp_path, "b", b"two"), capture_code=False)
    monkeypatch.undo()
    assert server.registry.models() == []
    assert server.registry.audit(action="version.register") == []
    assert _rows(server.registry) == {}


def test_garbage_collection_sweeps_rows_no_version_names(
    server: LiveServer, tmp_path: Path
) -> None:
    server.client("alice").register(
        "fraud", write_model(tmp_path, "m", b"kept"), capture_code=False
    )
    old = to_text(datetime.now(UTC) - timedelta(days=2))
    young = to_text(datetime.now(UTC))
    with server.registry._ctx.store.write() as conn:
        inlineblobs.insert(conn, {sha(b"orphan"): b"orphan"}, old)
        inlineblobs.insert(conn, {sha(b"fresh"): b"fresh"}, young)
    swept = server.registry.gc(grace_seconds=3600)
    rows = _rows(server.registry)
    assert sha(b"orphan") not in rows and swept["blobs"] == 1
    assert sha(b"kept") in rows and sha(b"fresh") in rows  # named by a version; young


def test_a_row_stored_again_is_young_again(server: LiveServer) -> None:
    old = to_text(datetime.now(UTC) - timedelta(days=2))
    now = to_text(datetime.now(UTC))
    with server.registry._ctx.store.write() as conn:
        inlineblobs.insert(conn, {sha(b"x"): b"x"}, old)
    with server.registry._ctx.store.write() as conn:
        inlineblobs.insert(conn, {sha(b"x"): b"x"}, now)
    assert _rows(server.registry)[sha(b"x")] == (b"x", now)
    assert server.registry.gc(grace_seconds=3600)["blobs"] == 0


def test_a_home_holding_inline_blobs_pushes_them(tmp_path: Path) -> None:
    homes = tmp_path / "a", tmp_path / "b"
    settings = [
        Settings.from_env(env={"MODELVAULT_DB": f"sqlite:///{h}/r.db"}, home=h) for h in homes
    ]
    with live_server(settings[0]) as first, live_server(settings[1]) as second:
        first.client("alice").register(
            "fraud", write_model(tmp_path, "m", b"weights"), capture_code=False
        )
        assert sha(b"weights") in _rows(first.registry)
        with Registry(settings=settings[0], actor="alice") as laptop:
            assert push(laptop, second.client("alice"))["pushed"] == ["default/fraud:1"]
        second.client("alice").pull("fraud:1", tmp_path / "out")
        assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights"


def test_a_download_of_an_inline_blob_is_refused_to_other_projects(
    server: LiveServer, tmp_path: Path
) -> None:
    server.client("alice").register(
        "fraud", write_model(tmp_path, "m", b"secret"), capture_code=False, project="bank-a"
    )
    from modelvault.service import identity

    ctx = server.registry._ctx
    identity.create_user(ctx, "bob")
    identity.grant(ctx, "bank-b", "bob", "admin")
    token, _ = identity.create_token(ctx, "bob", project="bank-b")
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as api:
        got = api.get(f"/blobs/{sha(b'secret')}", headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 404 and b"secret" not in got.content


def test_a_blob_kept_both_ways_is_as_young_as_its_younger_copy(server: LiveServer) -> None:
    # an old row and a file just written (or reused) with the same bytes: gc's grace period
    # protects the file, so it must not sweep the pair by the row's time
    old = to_text(datetime.now(UTC) - timedelta(days=2))
    with server.registry._ctx.store.write() as conn:
        inlineblobs.insert(conn, {sha(b"both"): b"both"}, old)
    _files(server.registry).put_bytes(b"both")  # type: ignore[attr-defined]
    assert server.registry.gc(grace_seconds=3600)["blobs"] == 0
    assert sha(b"both") in _rows(server.registry)
    assert server.registry.gc(grace_seconds=0)["blobs"] == 1  # then both copies go
    assert sha(b"both") not in _rows(server.registry)
    assert not _files(server.registry).exists(sha(b"both"))  # type: ignore[attr-defined]


# Local registrations (SDK, CLI) keep small files the same way (manifest.stage_files).


def test_a_small_file_registered_locally_is_kept_with_its_version(
    reg: Registry, tmp_path: Path
) -> None:
    weights = b"w" * LIMIT
    v = reg.register("fraud", write_model(tmp_path, "m", weights), capture_environment=False)
    rows = _rows(reg)
    assert rows[sha(weights)][0] == weights and v.artifact_digest in rows  # and the manifest
    files = _files(reg)
    assert not files.exists(sha(weights)) and not files.exists(v.artifact_digest)  # type: ignore[attr-defined]
    reg.pull("fraud:1", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == weights
    assert reg.manifest("fraud:1").files[0].digest == sha(weights)
    assert reg._ctx.blobs.verify(sha(weights)) and reg._ctx.blobs.verify(v.artifact_digest)


def test_a_local_file_above_the_limit_or_past_the_total_is_a_blob_file(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b"b" * (LIMIT + 1)
    reg.register("fraud", write_model(tmp_path, "big", big), capture_environment=False)
    assert sha(big) not in _rows(reg) and _files(reg).exists(sha(big))  # type: ignore[attr-defined]
    # a registration keeps at most keep_total bytes inline; the files past it are stored
    from modelvault import manifest

    staged = manifest.stage_files
    monkeypatch.setattr(
        versions,
        "stage_files",
        lambda *a, **kw: staged(*a, **kw, keep_total=10),
    )
    folder = tmp_path / "many"
    folder.mkdir()
    for name, data in (("a", b"a" * 6), ("b", b"b" * 6)):
        (folder / name).write_bytes(data)
    reg.register("fraud", folder, capture_environment=False)
    rows = _rows(reg)
    assert sha(b"a" * 6) in rows and sha(b"b" * 6) not in rows  # 6 + 6 > 10
    assert _files(reg).exists(sha(b"b" * 6))  # type: ignore[attr-defined]
    reg.pull("fraud:2", tmp_path / "out")
    assert (tmp_path / "out" / "b").read_bytes() == b"b" * 6


def test_a_local_limit_of_zero_keeps_every_blob_a_file(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {"MODELVAULT_INLINE_BLOB_MAX": "0"}
    with Registry(settings=Settings.from_env(env=env, home=home), actor="alice") as local:
        v = local.register(
            "fraud", write_model(tmp_path, "m", b"weights"), capture_environment=False
        )
        assert _rows(local) == {}
        assert _files(local).exists(sha(b"weights"))  # type: ignore[attr-defined]
        assert _files(local).exists(v.artifact_digest)  # type: ignore[attr-defined]


def test_a_wrong_limit_fails_a_local_registration_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {"MODELVAULT_INLINE_BLOB_MAX": "lots"}
    with Registry(settings=Settings.from_env(env=env, home=home), actor="alice") as local:
        with pytest.raises(InvalidInput, match="MODELVAULT_INLINE_BLOB_MAX must be a size"):
            local.register("fraud", write_model(tmp_path, "m", b"w"), capture_environment=False)
        assert local.models() == [] and _rows(local) == {}


def test_local_bytes_and_version_commit_together_or_not_at_all(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise StoreError("the audit log refused the event")

    monkeypatch.setattr(versions, "append", refused)  # after the rows went in
    with pytest.raises(StoreError, match="refused the event"):
        reg.register("fraud", write_model(tmp_path, "a", b"one"), capture_environment=False)
    monkeypatch.undo()
    assert reg.models() == [] and _rows(reg) == {}
    assert not _files(reg).exists(sha(b"one"))  # type: ignore[attr-defined]


def test_a_small_file_that_changes_while_it_is_read_is_refused(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelvault import manifest

    folder = write_model(tmp_path, "m", b"before")
    scanned = manifest.scan

    def scan_then_grow(root: Path) -> list[manifest.ScannedFile]:
        found = scanned(root)
        (folder / "model.bin").write_bytes(b"after, and longer")  # between scan and read
        return found

    monkeypatch.setattr(versions, "scan", scan_then_grow)
    with pytest.raises(InvalidInput, match="changed while it was being read"):
        reg.register("fraud", folder, capture_environment=False)
    assert reg.models() == [] and _rows(reg) == {}
