"""Receiving blobs on the server: a streamed body hashed as it is written, and chunked,
resumable upload sessions for large files.

Nothing is stored under a digest the bytes do not hash to. With the local blob store the
bytes are written once, straight into a temp file beside the blobs, hashed on the way, and
a match is renamed into place; other stores get the checked file through ``put_file``.

A session lives in ``$MODELVAULT_HOME/uploads/<id>/``: ``session.json``, and one marker file
``<index>.chunk`` per finished chunk, written once the chunk's bytes are in the session's
data file (at its offset), so an interrupted upload resumes with the chunks it finished.
The session id is derived from the user and the blob (its digest, or, for a client that
hashes the file as it sends it, the client's key for the file), so a client that lost it
gets the same session back by asking again; a session opened without a digest is completed
with the one the client computed. Chunks that arrive in order are hashed as they are
written (``writing``), so completing costs no second pass; anything else (a resent or
out-of-order chunk, another replica, a restart) makes completion hash the data file again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..blobs.base import BlobStore, checked_digest
from ..errors import Conflict, IntegrityError, InvalidInput, NotFound
from .writing import Writer

DEFAULT_CHUNK = 256 << 20
READ = 8 << 20


def spool_dir(home: Path) -> Path:
    path = home / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _staging(blobs: BlobStore, name: str | None) -> Path | None:
    """A temp file in the blob store itself (local store only: then storing is a rename)."""
    stage = getattr(blobs, "staging_path", None)
    return Path(stage(name)) if stage is not None else None


def _store(blobs: BlobStore, path: Path, digest: str, size: int) -> Any:
    adopt = getattr(blobs, "adopt", None)  # the local store: a rename, no copy
    put = adopt(path, digest, size) if adopt is not None else blobs.put_file(path)
    blobs.sync()
    return put


async def receive_blob(
    blobs: BlobStore, home: Path, digest: str, stream: AsyncIterator[bytes], size: int | None
) -> dict[str, Any]:
    """Store the streamed bytes under *digest* if, and only if, they hash to it."""
    checked_digest(digest)
    path = _staging(blobs, None)
    if path is None:
        fd, name = tempfile.mkstemp(dir=spool_dir(home), prefix=".in-")
        os.close(fd)
        path = Path(name)
    hasher = hashlib.sha256()
    writer = Writer(path, 0, [hasher])
    try:
        try:
            async for chunk in stream:
                await writer.add(chunk, size)
            await writer.finish()
        finally:
            writer.close()
        if size is not None and writer.size != size:
            raise IntegrityError(
                f"upload was cut short: {writer.size} of {size} bytes arrived; nothing stored",
                digest=digest,
            )
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise IntegrityError(
                f"uploaded bytes hash to {actual}, not {digest}; nothing stored", digest=digest
            )
        put = await anyio.to_thread.run_sync(lambda: _store(blobs, path, digest, writer.size))
        return {"digest": put.digest, "size": put.size, "stored": put.stored}
    finally:
        path.unlink(missing_ok=True)


@dataclass
class _Running:
    """The whole-blob hash of a session's chunks 0..next-1, as this process wrote them."""

    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    next: int = 0
    marks: list[str] = field(default_factory=list)  # each chunk's marker, in order
    inode: tuple[int, int] | None = None


_running: dict[str, _Running] = {}
_running_lock = threading.Lock()


def _take_running(session_id: str, index: int) -> _Running | None:
    """The session's running hash if *index* is the chunk it needs next (then owned by the
    caller until put back); any other chunk makes completion hash the file again."""
    with _running_lock:
        running = _running.pop(session_id, None)
        if index == 0:
            return _Running()
        return running if running is not None and running.next == index else None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    digest: str | None  # None: named by the client when it completes the upload
    size: int
    chunk_size: int
    path: Path
    data: Path  # where the chunks' bytes go, at their offsets

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def received(self) -> list[int]:
        if not self.data.exists():
            return []  # the bytes were cleared away (an idle session): every chunk again
        done = []
        for entry in self.path.iterdir():
            if entry.name.endswith(".chunk"):
                done.append(int(entry.name.removesuffix(".chunk")))
        return sorted(done)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "digest": self.digest,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "received": self.received(),
        }

    def expected_length(self, index: int) -> int:
        if not 0 <= index < self.chunks:
            raise InvalidInput(f"chunk {index} is out of range 0..{self.chunks - 1}", field="index")
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def marker(self, index: int) -> Path:
        return self.path / f"{index}.chunk"


def _data_path(blobs: BlobStore, path: Path, key: str) -> Path:
    staged = _staging(blobs, f"upload-{key}")
    return staged if staged is not None else path / "data"


def open_session(
    home: Path,
    blobs: BlobStore,
    user: str,
    digest: str | None,
    size: int,
    chunk: int | None,
    key: str | None = None,
) -> Session:
    """The session for *digest* (declared up front) or, when the client hashes as it sends,
    for the client's *key* of its file; the same one again for the same arguments."""
    if digest is not None:
        checked_digest(digest)
        name = f"{user}\x00{digest}\x00{size}"
    elif key is None or not (0 < len(key) <= 64 and key.isascii() and key.isalnum()):
        raise InvalidInput(
            "an upload opened without a digest needs a key: 1 to 64 letters or digits",
            field="key",
        )
    else:
        name = f"{user}\x00key\x00{key}\x00{size}"
    session_id = hashlib.sha256(name.encode()).hexdigest()[:32]
    path = spool_dir(home) / session_id
    meta = path / "session.json"
    stored = json.loads(meta.read_text()) if meta.exists() else {}
    chunk_size = int(stored["chunk_size"]) if stored else (chunk or DEFAULT_CHUNK)
    if stored.get("user") != user:  # new, or opened before sessions named their user
        path.mkdir(exist_ok=True)
        temp = path / ".session.json"
        info = {"digest": digest, "size": size, "chunk_size": chunk_size, "user": user}
        temp.write_text(json.dumps(info))
        temp.replace(meta)
    return Session(session_id, digest, size, chunk_size, path, _data(blobs, path))


def _data(blobs: BlobStore, path: Path) -> Path:
    return _data_path(blobs, path, path.name)


def find_session(home: Path, blobs: BlobStore, session_id: str, user: str) -> Session:
    """*user*'s upload session *session_id*; another user's is as absent as one that never
    was (its chunks, and completing it, are its owner's alone)."""
    if not session_id.isalnum() or len(session_id) != 32:
        raise NotFound(f"upload {session_id[:40]!r} does not exist", upload=session_id[:40])
    path = spool_dir(home) / session_id
    meta = path / "session.json"
    stored = json.loads(meta.read_text()) if meta.exists() else {}
    if stored.get("user") != user:
        raise NotFound(f"upload {session_id} does not exist (finished or never started)")
    return Session(
        session_id,
        stored.get("digest"),
        int(stored["size"]),
        int(stored["chunk_size"]),
        path,
        _data(blobs, path),
    )


def _lock_chunk(session: Session, index: int) -> int:
    """Hold chunk *index* of *session* against a second request writing it at once (in
    this process or another replica's)."""
    try:
        fd = os.open(session.path / f"{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # completed or failed meanwhile
        raise NotFound(f"upload {session.id} does not exist (finished or never started)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"chunk {index} of upload {session.id} is being received already") from None
    return fd


async def receive_chunk(
    session: Session, index: int, stream: AsyncIterator[bytes], sha256: str | None
) -> dict[str, Any]:
    expected = session.expected_length(index)
    lock = _lock_chunk(session, index)
    running = _take_running(session.id, index)
    try:
        session.marker(index).unlink(missing_ok=True)  # unfinished until rewritten whole
        if not session.data.exists():  # new, or cleared away: earlier markers are void
            for entry in session.path.glob("*.chunk"):
                entry.unlink(missing_ok=True)
        hashers: list[hashlib._Hash] = [running.hasher] if running is not None else []
        piece = hashlib.sha256() if sha256 is not None else None
        if piece is not None:
            hashers.append(piece)
        writer = Writer(session.data, index * session.chunk_size, hashers)
        try:
            st = os.fstat(writer.fd)
            async for part in stream:
                await writer.add(part, expected)
            await writer.finish()
        finally:
            writer.close()
        if writer.size != expected:
            raise IntegrityError(
                f"chunk {index} was cut short: {writer.size} of {expected} bytes arrived"
            )
        if piece is not None and (actual := "sha256:" + piece.hexdigest()) != sha256:
            raise IntegrityError(f"chunk {index} hashes to {actual}, not {sha256}")
        mark = uuid.uuid4().hex
        temp = session.path / f".{index}.{mark}"
        temp.write_text(mark)
        temp.replace(session.marker(index))
        if running is not None and running.inode in (None, (st.st_dev, st.st_ino)):
            running.inode = (st.st_dev, st.st_ino)
            running.next = index + 1
            running.marks.append(mark)
            with _running_lock:
                _running[session.id] = running
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    return session.describe()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buffer = memoryview(bytearray(READ))
        while n := f.readinto(buffer):
            digest.update(buffer[:n])
    return "sha256:" + digest.hexdigest()


def _whole_digest(session: Session) -> str:
    """The data file's digest: from the running hash when it covers every chunk exactly as
    the markers and the file now are, else by reading the file once more."""
    with _running_lock:
        running = _running.pop(session.id, None)
    if running is not None and running.next == session.chunks:
        marks = [session.marker(i).read_text() for i in range(session.chunks)]
        st = os.stat(session.data)
        if marks == running.marks and running.inode == (st.st_dev, st.st_ino):
            return "sha256:" + running.hasher.hexdigest()
    return _hash_file(session.data)


def complete(session: Session, blobs: BlobStore, digest: str | None = None) -> dict[str, Any]:
    """Check the whole against the digest (declared when the session opened, or named now),
    store it, end the session. Bytes the store already holds are dropped."""
    if digest is not None:
        checked_digest(digest)
    if session.digest is not None and digest not in (None, session.digest):
        raise InvalidInput(
            f"upload {session.id} was opened for {session.digest}, not {digest}", field="digest"
        )
    expected = digest or session.digest
    if expected is None:
        raise InvalidInput(
            f"upload {session.id} was opened without a digest: completing it needs the digest"
            " the client computed",
            field="digest",
        )
    missing = sorted(set(range(session.chunks)) - set(session.received()))
    if missing:
        raise InvalidInput(
            f"upload {session.id} is missing {len(missing)} chunk(s), first {missing[0]}",
            field="chunks",
        )
    locks: list[int] = []
    try:
        for index in range(session.chunks):
            locks.append(_lock_chunk(session, index))
        if os.stat(session.data).st_size != session.size:
            _end(session)
            raise IntegrityError(
                f"upload {session.id} holds the wrong number of bytes; nothing stored",
                digest=expected,
            )
        actual = _whole_digest(session)
        if actual != expected:
            _end(session)
            raise IntegrityError(
                f"uploaded chunks hash to {actual}, not {expected}; nothing stored",
                digest=expected,
            )
        put = _store(blobs, session.data, expected, session.size)
    finally:
        for lock in locks:
            os.close(lock)
    _end(session)
    return {"digest": put.digest, "size": put.size, "stored": put.stored}


def _end(session: Session) -> None:
    with _running_lock:
        _running.pop(session.id, None)
    session.data.unlink(missing_ok=True)
    shutil.rmtree(session.path, ignore_errors=True)


def sweep(
    home: Path,
    blobs: BlobStore | None = None,
    *,
    spool_age: float = 86_400,
    session_age: float = 7 * 86_400,
) -> int:
    """Remove what interrupted transfers left: spool files older than *spool_age* seconds
    and upload sessions untouched for *session_age*, with their bytes in *blobs*' temp
    directory (the server does this at start)."""
    import time

    now, removed = time.time(), 0
    for entry in spool_dir(home).iterdir():
        try:
            age = now - entry.stat().st_mtime
            if entry.is_dir():
                data = _data(blobs, entry) if blobs is not None else entry / "data"
                stamps = [p.stat().st_mtime for p in (*entry.iterdir(), data) if p.exists()]
                if now - max(max(stamps, default=0.0), entry.stat().st_mtime) > session_age:
                    data.unlink(missing_ok=True)
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            elif entry.name.startswith(".in-") and age > spool_age:
                entry.unlink(missing_ok=True)
                removed += 1
        except FileNotFoundError:  # another replica swept it first
            continue
    return removed
