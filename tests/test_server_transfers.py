"""Large transfers through the server: bytes written once into the blob store's own temp
directory, chunked uploads hashed as they arrive (and hashed again only when the chunks on
disk are not the ones hashed), and downloads read straight from the socket, verified."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from modelvault import IntegrityError, NotFound
from modelvault.remote import RemoteRegistry
from modelvault.server import transfers

from .conftest import write_model
from .server_fixtures import LiveServer

CHUNK = 1 << 20
DATA = bytes(range(256)) * (3 * 4096 + 100)  # 3 chunks and a bit


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def api(server: LiveServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    return httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30)


def _start(c: httpx.Client, data: bytes = DATA, digest: str | None = None) -> dict[str, str]:
    body = {"digest": digest or sha(data), "size": len(data), "chunk_size": CHUNK}
    answer = c.post("/uploads", json=body)
    assert answer.status_code == 201, answer.text
    session: dict[str, str] = answer.json()
    return session


def _put(c: httpx.Client, session: dict[str, str], index: int, data: bytes = DATA) -> int:
    piece = data[index * CHUNK : (index + 1) * CHUNK]
    return c.put(f"/uploads/{session['id']}/chunks/{index}", content=piece).status_code


def _leftovers(server: LiveServer) -> list[str]:
    staging = server.registry._ctx.blobs.root / "tmp"
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def _no_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> str:
        raise AssertionError(f"{path} was hashed a second time")

    monkeypatch.setattr(transfers, "_hash_file", refuse)


def test_chunks_sent_in_order_are_hashed_once_and_stored_by_a_rename(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_second_pass(monkeypatch)
    with api(server) as c:
        session = _start(c)
        for index in range(4):
            assert _put(c, session, index) == 200
        # the bytes sit in one file in the blob store's temp directory, not in the spool
        assert _leftovers(server) == [f"upload-{session['id']}.partial"]
        done = c.post(f"/uploads/{session['id']}/complete")
    assert done.status_code == 201, done.text
    assert done.json() == {"digest": sha(DATA), "size": len(DATA), "stored": True}
    blobs = server.registry._ctx.blobs
    assert blobs.read_bytes(sha(DATA)) == DATA
    assert _leftovers(server) == []
    assert not (server.registry.settings.home / "uploads" / session["id"]).exists()


def test_a_resent_chunk_makes_completion_hash_the_file_again(server: LiveServer) -> None:
    wrong = DATA[:CHUNK] + b"x" * CHUNK + DATA[2 * CHUNK :]
    with api(server) as c:
        session = _start(c)
        for index in range(4):
            assert _put(c, session, index, wrong) == 200
        assert _put(c, session, 1) == 200  # the right bytes, out of order
        done = c.post(f"/uploads/{session['id']}/complete")
    assert done.status_code == 201, done.text
    assert server.registry._ctx.blobs.read_bytes(sha(DATA)) == DATA


def test_chunk_bytes_changed_by_another_server_are_caught(server: LiveServer) -> None:
    """A replica sharing the directories rewrote chunk 1 after this one hashed it: its new
    marker shows it, so the whole is hashed again, and the wrong bytes are refused."""
    with api(server) as c:
        session = _start(c)
        for index in range(4):
            assert _put(c, session, index) == 200
        data = server.registry._ctx.blobs.root / "tmp" / f"upload-{session['id']}.partial"
        with open(data, "r+b") as f:
            f.seek(CHUNK)
            f.write(b"y" * CHUNK)
        (server.registry.settings.home / "uploads" / session["id"] / "1.chunk").write_text("b")
        done = c.post(f"/uploads/{session['id']}/complete")
        assert done.status_code == 422, done.text
        assert done.json()["error"]["code"] == "integrity"
        assert c.get(f"/uploads/{session['id']}").status_code == 404  # the session is gone
    assert not server.registry._ctx.blobs.exists(sha(DATA))
    assert _leftovers(server) == []


def test_a_chunk_being_received_cannot_be_sent_twice_at_once(server: LiveServer) -> None:
    with api(server) as c:
        session = _start(c)
        lock = server.registry.settings.home / "uploads" / session["id"] / "0.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as the request receiving it holds it
            answer = c.put(f"/uploads/{session['id']}/chunks/0", content=DATA[:CHUNK])
            assert answer.status_code == 409
            assert answer.json()["error"]["code"] == "conflict"
        finally:
            os.close(fd)
        assert _put(c, session, 0) == 200
        assert c.get(f"/uploads/{session['id']}").json()["received"] == [0]


def test_chunks_cleared_away_while_idle_are_asked_for_again(server: LiveServer) -> None:
    """The blob store's cleanup removes stale temp files: the session's markers then no
    longer count, and the client sends every chunk again."""
    with api(server) as c:
        session = _start(c)
        assert _put(c, session, 0) == 200 and _put(c, session, 1) == 200
        for name in _leftovers(server):
            (server.registry._ctx.blobs.root / "tmp" / name).unlink()
        assert c.get(f"/uploads/{session['id']}").json()["received"] == []
        for index in range(4):
            assert _put(c, session, index) == 200
        assert c.post(f"/uploads/{session['id']}/complete").status_code == 201
    assert server.registry._ctx.blobs.read_bytes(sha(DATA)) == DATA


def test_a_streamed_upload_is_written_into_the_store_once(server: LiveServer) -> None:
    data = os.urandom(3 << 20)
    with api(server) as c:
        answer = c.put(f"/blobs/{sha(data)}", content=data)
        assert answer.status_code == 201, answer.text
        again = c.put(f"/blobs/{sha(data)}", content=data)  # already there: nothing new
        assert again.status_code == 201, again.text
    assert server.registry._ctx.blobs.read_bytes(sha(data)) == data
    assert _leftovers(server) == []
    spool = server.registry.settings.home / "uploads"
    assert not spool.exists() or list(spool.iterdir()) == []


def test_a_pull_reads_the_body_from_the_socket_and_verifies_it(
    server: LiveServer, tmp_path: Path
) -> None:
    alice = server.client("alice")
    assert isinstance(alice, RemoteRegistry)
    payload = os.urandom(5 << 20) + b"tail"
    v = alice.register("m", write_model(tmp_path, "a", payload), capture_environment=False)
    sent: list[str] = []
    alice._http.client.event_hooks["request"] = [lambda r: sent.append(r.url.path)]
    out = alice.pull(v.ref, tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == payload
    assert out.bytes == len(payload)
    digest = sha(payload)
    assert not [p for p in sent if digest in p]  # its body did not go through httpx
    with pytest.raises(NotFound, match="does not exist or this token may not see it"):
        alice._blobs.copy_to(sha(b"never stored"), tmp_path / "nothing")
    stored = server.registry._ctx.blobs.path_of(digest)
    os.chmod(stored, 0o644)
    with open(stored, "r+b") as f:
        f.write(b"X")
    with pytest.raises(IntegrityError, match="corrupt"):
        alice._blobs.copy_to(digest, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    assert not (tmp_path / "nothing").exists()


def test_a_store_without_a_staging_area_gets_the_checked_file(tmp_path: Path) -> None:
    """Other blob stores (memory, S3) get the upload through put_file: the bytes wait in the
    session's own directory, and a chunked session completes the same way."""
    import anyio

    from modelvault.blobs.memory import MemoryBlobStore

    blobs = MemoryBlobStore()
    home = tmp_path / "home"

    async def body(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    async def upload() -> None:
        streamed = os.urandom(300_000)
        done = await transfers.receive_blob(blobs, home, sha(streamed), body(streamed), None)
        assert done == {"digest": sha(streamed), "size": len(streamed), "stored": True}
        session = transfers.open_session(home, blobs, "alice", sha(DATA), len(DATA), CHUNK)
        assert session.data == session.path / "data"
        with pytest.raises(IntegrityError, match="chunk 0 hashes to"):
            await transfers.receive_chunk(session, 0, body(DATA[:CHUNK]), sha(b"other"))
        assert session.received() == []  # a chunk failing its own digest does not count
        for index in (2, 0, 1, 3):  # out of order: completion hashes the file again
            piece = DATA[index * CHUNK : (index + 1) * CHUNK]
            await transfers.receive_chunk(session, index, body(piece), sha(piece))
        assert transfers.complete(session, blobs)["stored"] is True
        assert blobs.read_bytes(sha(streamed)) == streamed

    anyio.run(upload)
    assert blobs.read_bytes(sha(DATA)) == DATA
    assert [p.name for p in (home / "uploads").iterdir()] == []
