"""Large transfers through the server: bytes written once into the blob store's own temp
directory, chunked uploads hashed as they arrive (and hashed again only when the chunks on
disk are not the ones hashed), and downloads read straight from the socket, verified."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy

import modelvault.remote as remote_package
from modelvault import IntegrityError, NotFound
from modelvault.filecache import HashCache
from modelvault.remote import RemoteRegistry
from modelvault.remote import blobs as remote_blobs
from modelvault.server import transfers
from modelvault.store import schema

from .conftest import write_model
from .server_fixtures import LiveServer

CHUNK = 1 << 20
DATA = bytes(range(256)) * (3 * 4096 + 100)  # 3 chunks and a bit


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
    with server.api(server.token("alice")) as c:
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
    with server.api(server.token("alice")) as c:
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
    with server.api(server.token("alice")) as c:
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
    with server.api(server.token("alice")) as c:
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
    with server.api(server.token("alice")) as c:
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
    with server.api(server.token("alice")) as c:
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


# -- one pass: large files hashed as they are sent ------------------------------------------


def _one_pass_client(server: LiveServer, tmp_path: Path) -> tuple[RemoteRegistry, list[str]]:
    """A client sending files from 2 MiB up in 1 MiB chunks, hashed as they go, with its own
    digest cache; and the list of requests it makes."""
    client = server.client("alice")
    assert isinstance(client, RemoteRegistry)
    client._blobs.chunked_from, client._blobs.chunk = 2 * CHUNK, CHUNK
    client._blobs.digests = HashCache(tmp_path / "digests.db")
    sent: list[str] = []
    client._http.on_request.append(lambda method, path: sent.append(f"{method} {path}"))
    return client, sent


def _chunk_puts(sent: list[str]) -> list[int]:
    return [int(line.rsplit("/", 1)[1]) for line in sent if "/chunks/" in line]


def test_a_large_file_is_read_once_sent_as_it_is_hashed_and_checked_at_completion(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, sent = _one_pass_client(server, tmp_path)
    _no_second_pass(monkeypatch)  # nor on the server: chunks arrive in order

    def refuse(path: Path) -> str:
        raise AssertionError(f"{path} was hashed before it was sent")

    monkeypatch.setattr(remote_blobs, "file_digest", refuse)
    monkeypatch.setattr(remote_package, "file_digest", refuse)
    bodies: dict[str, list[object]] = {}
    real_call = alice._http.call

    def call(method: str, path: str, **kwargs: object) -> object:
        bodies.setdefault(path, []).append(kwargs.get("json"))
        return real_call(method, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alice._http, "call", call)
    model = write_model(tmp_path, "a", DATA)
    v = alice.register("m", model, capture_environment=False)
    digest = sha(DATA)
    # not asked "is it missing?" first: its digest is known only once the file is sent
    assert not [b for b in bodies.get("/blobs/missing", []) if digest in str(b)]
    [opened] = bodies["/uploads"]
    assert isinstance(opened, dict) and opened.keys() == {"size", "chunk_size", "key"}
    assert (opened["size"], opened["chunk_size"]) == (len(DATA), CHUNK)
    [named] = [b for p, bs in bodies.items() if "complete" in p for b in bs]
    assert named == {"digest": digest}
    assert _chunk_puts(sent) == [0, 1, 2, 3]
    assert server.registry._ctx.blobs.read_bytes(digest) == DATA
    assert _leftovers(server) == []
    monkeypatch.undo()
    alice.pull(v.ref, tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == DATA
    # the same file again: its digest is in this machine's cache, so the server is asked
    # whether it has it, and nothing is sent
    sent.clear()
    alice._blobs.present.clear()
    alice.register("m2", model, capture_environment=False)
    assert any(line.endswith("/blobs/missing") for line in sent)
    assert _chunk_puts(sent) == []
    (model / "model.bin").write_bytes(DATA)  # touched: the cache no longer vouches for it
    sent.clear()
    alice.register("m3", model, capture_environment=False)
    assert _chunk_puts(sent) == [0, 1, 2, 3]


def test_an_interrupted_one_pass_upload_resumes_without_resending_finished_chunks(
    server: LiveServer, tmp_path: Path
) -> None:
    alice, sent = _one_pass_client(server, tmp_path)
    model = write_model(tmp_path, "a", DATA)

    def die_at_chunk_2(method: str, path: str) -> None:
        if path.endswith("/chunks/2"):
            raise ConnectionResetError("the network went away")

    alice._http.on_request.append(die_at_chunk_2)
    with pytest.raises(ConnectionResetError):
        alice.register("m", model, capture_environment=False)
    assert _chunk_puts(sent) == [0, 1, 2]
    assert not server.registry._ctx.blobs.exists(sha(DATA))  # nothing stored yet
    alice._http.on_request.remove(die_at_chunk_2)
    sent.clear()
    v = alice.register("m", model, capture_environment=False)
    assert _chunk_puts(sent) == [2, 3]  # 0 and 1 were hashed here, not sent again
    alice.pull(v.ref, tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == DATA


def test_a_resumed_session_holding_other_bytes_is_started_over(
    server: LiveServer, tmp_path: Path
) -> None:
    """Chunks an earlier attempt left that are not this file's bytes fail the check at
    completion (the session ends, nothing stored); the client then sends every chunk."""
    alice, sent = _one_pass_client(server, tmp_path)
    model = write_model(tmp_path, "a", DATA) / "model.bin"
    # an earlier attempt, from a file that looked the same, left chunks 0 and 1
    key = hashlib.sha256(repr(remote_blobs._key(model, os.stat(model))).encode()).hexdigest()
    wrong = b"w" * (2 * CHUNK) + DATA[2 * CHUNK :]
    with server.api(server.token("alice")) as c:
        session = c.post("/uploads", json={"size": len(DATA), "chunk_size": CHUNK, "key": key[:32]})
        assert _put(c, session.json(), 0, wrong) == 200 and _put(c, session.json(), 1, wrong) == 200
    put = alice._blobs.send_file(model)
    assert put.digest == sha(DATA)
    assert _chunk_puts(sent) == [2, 3, 0, 1, 2, 3]
    assert server.registry._ctx.blobs.read_bytes(sha(DATA)) == DATA


def test_a_digest_named_at_completion_that_the_bytes_do_not_hash_to_stores_nothing(
    server: LiveServer,
) -> None:
    with server.api(server.token("alice")) as c:
        body = {"size": len(DATA), "chunk_size": CHUNK, "key": "k1"}
        session = c.post("/uploads", json=body).json()
        assert session["digest"] is None and session["received"] == []
        assert c.post("/uploads", json=body).json()["id"] == session["id"]  # found again
        assert c.post("/uploads", json={**body, "key": "../x"}).status_code == 400
        assert c.post("/uploads", json={"size": 1}).json()["error"]["code"] == "invalid_input"
        for index in range(4):
            assert _put(c, session, index) == 200
        done = f"/uploads/{session['id']}/complete"
        no_digest = c.post(done)
        assert no_digest.status_code == 400, no_digest.text
        assert "needs the digest" in no_digest.json()["error"]["message"]
        assert c.get(f"/uploads/{session['id']}").json()["received"] == [0, 1, 2, 3]  # kept
        wrong = c.post(done, json={"digest": sha(b"something else")})
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["error"]["code"] == "integrity"
        assert c.get(f"/uploads/{session['id']}").status_code == 404  # the session is gone
    blobs = server.registry._ctx.blobs
    assert not blobs.exists(sha(b"something else")) and not blobs.exists(sha(DATA))
    assert _leftovers(server) == []


def test_a_declared_session_takes_no_other_digest_at_completion(server: LiveServer) -> None:
    with server.api(server.token("alice")) as c:
        session = _start(c)
        for index in range(4):
            assert _put(c, session, index) == 200
        other = c.post(f"/uploads/{session['id']}/complete", json={"digest": sha(b"x")})
        assert other.status_code == 400, other.text
        assert "was opened for" in other.json()["error"]["message"]
        same = c.post(f"/uploads/{session['id']}/complete", json={"digest": sha(DATA)})
        assert same.status_code == 201, same.text


def test_a_body_cut_off_mid_chunk_leaves_nothing(server: LiveServer) -> None:
    with server.api(server.token("alice")) as c:
        session = c.post("/uploads", json={"size": len(DATA), "chunk_size": CHUNK, "key": "k2"})
        sid = session.json()["id"]
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            f"PUT /api/v1/uploads/{sid}/chunks/0 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {server.token('alice')}\r\n"
            f"Content-Length: {CHUNK}\r\n\r\n".encode()
            + DATA[: CHUNK // 2]
        )
    with server.api(server.token("alice")) as c:
        deadline = time.monotonic() + 10
        while (state := c.get(f"/uploads/{sid}").json())["received"] != [] or _locked(server, sid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        done = c.post(f"/uploads/{sid}/complete", json={"digest": sha(DATA)})
        assert done.status_code == 400 and "missing 4 chunk(s)" in done.text, done.text
        assert state["received"] == []
    assert not server.registry._ctx.blobs.exists(sha(DATA))


def _locked(server: LiveServer, session: str) -> bool:
    """Whether a request still holds chunk 0 of *session*."""
    path = server.registry.settings.home / "uploads" / session / "0.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_bytes_the_store_holds_are_dropped_at_completion_and_the_sender_may_name_them(
    server: LiveServer, tmp_path: Path
) -> None:
    alice, _ = _one_pass_client(server, tmp_path)
    alice.register("m", write_model(tmp_path, "a", DATA), capture_environment=False)
    stored = server.registry._ctx.blobs.path_of(sha(DATA))
    before = os.stat(stored).st_ino
    bob = server.client("bob")
    assert isinstance(bob, RemoteRegistry)
    bob._blobs.chunked_from, bob._blobs.chunk = 2 * CHUNK, CHUNK
    bob._blobs.digests = HashCache(tmp_path / "bob.db")
    bob._blobs.send_file(write_model(tmp_path, "b", DATA) / "model.bin")
    assert os.stat(stored).st_ino == before  # the blob was not replaced: the upload dropped
    assert _leftovers(server) == []
    with server.registry._ctx.store.read() as conn:
        uploaders = conn.execute(
            sqlalchemy.select(schema.blob_uploads.c.user).where(
                schema.blob_uploads.c.digest == sha(DATA)
            )
        ).scalars()
        assert "bob" in set(uploaders)  # bob showed the bytes: versions of his may name them


def test_head_and_get_of_a_blob_read_it_past_the_page_cache(
    server: LiveServer, tmp_path: Path
) -> None:
    alice = server.client("alice")
    assert isinstance(alice, RemoteRegistry)
    payload = os.urandom((9 << 20) + 123)  # more than one 8 MiB read, not page-aligned
    v = alice.register("m", write_model(tmp_path, "a", payload), capture_environment=False)
    assert alice._blobs.size(sha(payload)) == len(payload)
    with server.api(server.token("alice")) as c:
        head = c.head(f"/blobs/{sha(payload)}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(payload))
    alice.pull(v.ref, tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == payload


def test_an_upload_session_is_its_owner_s_alone(server: LiveServer) -> None:
    # the session id is derived from user, digest and size: another user who knows them
    # could name it, and must find nothing there (sending chunks into it, or completing it
    # and so being counted as holding bytes someone else sent)
    with server.api(server.token("alice")) as alice:
        session = _start(alice)
        for index in range(3):
            assert _put(alice, session, index) == 200
        with server.api(server.token("mallory")) as mallory:
            absent = mallory.get("/uploads/" + "0" * 32)
            for answer in (
                mallory.get(f"/uploads/{session['id']}"),
                mallory.put(f"/uploads/{session['id']}/chunks/3", content=DATA[3 * CHUNK :]),
                mallory.post(f"/uploads/{session['id']}/complete"),
            ):
                assert answer.status_code == 404
                assert answer.json()["error"]["code"] == absent.json()["error"]["code"]
        assert _put(alice, session, 3) == 200
        done = alice.post(f"/uploads/{session['id']}/complete")
        assert done.status_code == 201, done.text
        assert done.json()["digest"] == sha(DATA)
