"""Receiving blobs on the server: a streamed body hashed as it is written, and chunked,
resumable upload sessions for large files.

Nothing is stored under a digest the bytes do not hash to. With the local blob store the
bytes are written once, straight into a temp file beside the blobs, hashed on the way, and
a match is renamed into place; other stores get the checked file through ``put_file``.

A session lives in ``$MODELVAULT_HOME/uploads/<id>/``: ``session.json``, and one marker file
``<index>.chunk`` per finished chunk, written once the chunk's bytes are in the session's
data file (at its offset), so an interrupted upload resumes with the chunks it finished.
The session id is derived from the user and the blob, so a client that lost it gets the
same session back by asking again. Chunks that arrive in order are hashed as they are
written, so completing costs no second pass; anything else (a resent or out-of-order chunk,
another replica, a restart) makes completion hash the data file once more.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
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
from ..errors import Conflict, IntegrityError, InvalidInput, NotFound, PayloadTooLarge

DEFAULT_CHUNK = 64 << 20
BUFFER = 4 << 20
AHEAD = 4  # batches received but not yet written, per upload
_IOV_MAX = 1024
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


class _Writer:
    """Bytes written at an offset of a file, hashed on the way by zero, one or two hashers,
    by a worker thread while the request keeps receiving (a few 4 MiB batches ahead at
    most). A batch is the network's pieces as they came, written with one ``pwritev``:
    the bytes are not copied into a buffer first."""

    def __init__(self, path: Path, offset: int, hashers: list[hashlib._Hash]) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.offset = offset
        self.hashers = hashers
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.failed: list[BaseException] = []
        self.queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=AHEAD)
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            if not self.failed:
                try:
                    self._write(data)
                except BaseException as exc:
                    self.failed.append(exc)

    def _write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            for hasher in self.hashers:
                hasher.update(piece)
        views = [memoryview(p) for p in pieces]
        while views:
            written = os.pwritev(self.fd, views[:_IOV_MAX], self.offset)
            self.offset += written
            while views and written >= len(views[0]):
                written -= len(views.pop(0))
            if views and written:
                views[0] = views[0][written:]

    async def _hand_over(self, data: list[bytes]) -> None:
        if self.failed:
            raise self.failed[0]
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="modelvault-upload", daemon=True)
            self.thread.start()
        try:
            self.queue.put_nowait(data)
        except queue.Full:
            await anyio.to_thread.run_sync(self.queue.put, data)

    async def add(self, chunk: bytes, limit: int | None) -> None:
        self.size += len(chunk)
        if limit is not None and self.size > limit:
            raise PayloadTooLarge(f"body is over the declared size of {limit} bytes")
        self.pending.append(chunk)
        self.pending_size += len(chunk)
        if self.pending_size >= BUFFER:
            data, self.pending, self.pending_size = self.pending, [], 0
            await self._hand_over(data)

    async def finish(self) -> None:
        """Write what is left and wait for the worker; raises what writing raised."""
        data, self.pending, self.pending_size = self.pending, [], 0
        if data:
            await self._hand_over(data)
        await anyio.to_thread.run_sync(self._stop)
        if self.failed:
            raise self.failed[0]

    def _stop(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def close(self) -> None:
        """Stop the worker (after finish, or abandoning the bytes) and close the file."""
        if self.thread is not None:
            self.failed.append(InvalidInput("upload abandoned"))  # skip what is queued
            self._stop()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
    writer = _Writer(path, 0, [hasher])
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
    digest: str
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
    home: Path, blobs: BlobStore, user: str, digest: str, size: int, chunk: int | None
) -> Session:
    checked_digest(digest)
    key = hashlib.sha256(f"{user}\x00{digest}\x00{size}".encode()).hexdigest()[:32]
    path = spool_dir(home) / key
    meta = path / "session.json"
    if meta.exists():
        stored = json.loads(meta.read_text())
        return Session(key, digest, size, int(stored["chunk_size"]), path, _data(blobs, path))
    path.mkdir(exist_ok=True)
    chunk_size = chunk or DEFAULT_CHUNK
    temp = path / ".session.json"
    temp.write_text(json.dumps({"digest": digest, "size": size, "chunk_size": chunk_size}))
    temp.replace(meta)
    return Session(key, digest, size, chunk_size, path, _data(blobs, path))


def _data(blobs: BlobStore, path: Path) -> Path:
    return _data_path(blobs, path, path.name)


def find_session(home: Path, blobs: BlobStore, session_id: str) -> Session:
    if not session_id.isalnum() or len(session_id) != 32:
        raise NotFound(f"upload {session_id[:40]!r} does not exist", upload=session_id[:40])
    path = spool_dir(home) / session_id
    meta = path / "session.json"
    if not meta.exists():
        raise NotFound(f"upload {session_id} does not exist (finished or never started)")
    stored = json.loads(meta.read_text())
    return Session(
        session_id,
        stored["digest"],
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
        writer = _Writer(session.data, index * session.chunk_size, hashers)
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


def complete(session: Session, blobs: BlobStore) -> dict[str, Any]:
    """Check the whole against the digest, store it, end the session."""
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
                digest=session.digest,
            )
        actual = _whole_digest(session)
        if actual != session.digest:
            _end(session)
            raise IntegrityError(
                f"uploaded chunks hash to {actual}, not {session.digest}; nothing stored",
                digest=session.digest,
            )
        put = _store(blobs, session.data, session.digest, session.size)
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
