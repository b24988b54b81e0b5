"""Receiving blobs on the server: a streamed body hashed as it is written, and chunked,
resumable upload sessions for large files.

Nothing is stored under a digest the bytes do not hash to: bytes land in a spool file first,
are hashed on the way, and only a match is handed to the blob store (which is write-once).
A session lives in ``$MODELVAULT_HOME/uploads/<id>/``: one file per finished chunk, written
under a temporary name and renamed once whole, so an interrupted upload resumes with the
chunks it finished. The session id is derived from the user and the blob, so a client that
lost it gets the same session back by asking again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..blobs.base import BlobStore, checked_digest
from ..errors import IntegrityError, InvalidInput, NotFound, PayloadTooLarge

DEFAULT_CHUNK = 64 << 20
BUFFER = 4 << 20


def spool_dir(home: Path) -> Path:
    path = home / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Spool:
    """A temp file fed in large buffers from a worker thread, hashing what it writes."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".in-")
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.pending = bytearray()

    def _write(self, data: bytes | bytearray) -> None:
        self.hash.update(data)
        self.file.write(data)

    async def add(self, chunk: bytes, limit: int | None) -> None:
        self.size += len(chunk)
        if limit is not None and self.size > limit:
            raise PayloadTooLarge(f"body is over the declared size of {limit} bytes")
        self.pending += chunk
        if len(self.pending) >= BUFFER:
            data, self.pending = self.pending, bytearray()
            await anyio.to_thread.run_sync(self._write, data)

    async def finish(self) -> str:
        data, self.pending = self.pending, bytearray()
        await anyio.to_thread.run_sync(self._write, data)
        self.file.close()
        return "sha256:" + self.hash.hexdigest()

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


async def receive_blob(
    blobs: BlobStore, home: Path, digest: str, stream: AsyncIterator[bytes], size: int | None
) -> dict[str, Any]:
    """Store the streamed bytes under *digest* if, and only if, they hash to it."""
    checked_digest(digest)
    spool = _Spool(spool_dir(home))
    try:
        async for chunk in stream:
            await spool.add(chunk, size)
        actual = await spool.finish()
        if size is not None and spool.size != size:
            raise IntegrityError(
                f"upload was cut short: {spool.size} of {size} bytes arrived; nothing stored",
                digest=digest,
            )
        if actual != digest:
            raise IntegrityError(
                f"uploaded bytes hash to {actual}, not {digest}; nothing stored", digest=digest
            )
        put = await anyio.to_thread.run_sync(lambda: blobs.put_file(spool.path))
        await anyio.to_thread.run_sync(blobs.sync)
        return {"digest": put.digest, "size": put.size, "stored": put.stored}
    finally:
        spool.discard()


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    digest: str
    size: int
    chunk_size: int
    path: Path

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def received(self) -> list[int]:
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


def open_session(home: Path, user: str, digest: str, size: int, chunk: int | None) -> Session:
    checked_digest(digest)
    key = hashlib.sha256(f"{user}\x00{digest}\x00{size}".encode()).hexdigest()[:32]
    path = spool_dir(home) / key
    meta = path / "session.json"
    if meta.exists():
        stored = json.loads(meta.read_text())
        return Session(key, digest, size, int(stored["chunk_size"]), path)
    path.mkdir(exist_ok=True)
    chunk_size = chunk or DEFAULT_CHUNK
    temp = path / ".session.json"
    temp.write_text(json.dumps({"digest": digest, "size": size, "chunk_size": chunk_size}))
    temp.replace(meta)
    return Session(key, digest, size, chunk_size, path)


def find_session(home: Path, session_id: str) -> Session:
    if not session_id.isalnum() or len(session_id) != 32:
        raise NotFound(f"upload {session_id[:40]!r} does not exist", upload=session_id[:40])
    path = spool_dir(home) / session_id
    meta = path / "session.json"
    if not meta.exists():
        raise NotFound(f"upload {session_id} does not exist (finished or never started)")
    stored = json.loads(meta.read_text())
    return Session(
        session_id, stored["digest"], int(stored["size"]), int(stored["chunk_size"]), path
    )


async def receive_chunk(
    session: Session, index: int, stream: AsyncIterator[bytes], sha256: str | None
) -> dict[str, Any]:
    expected = session.expected_length(index)
    spool = _Spool(session.path)
    try:
        async for part in stream:
            await spool.add(part, expected)
        actual = await spool.finish()
        if spool.size != expected:
            raise IntegrityError(
                f"chunk {index} was cut short: {spool.size} of {expected} bytes arrived"
            )
        if sha256 is not None and actual != sha256:
            raise IntegrityError(f"chunk {index} hashes to {actual}, not {sha256}")
        spool.path.replace(session.path / f"{index}.chunk")
    finally:
        spool.discard()
    return session.describe()


def complete(session: Session, blobs: BlobStore) -> dict[str, Any]:
    """Join the chunks, check the whole against the digest, store it, end the session."""
    missing = sorted(set(range(session.chunks)) - set(session.received()))
    if missing:
        raise InvalidInput(
            f"upload {session.id} is missing {len(missing)} chunk(s), first {missing[0]}",
            field="chunks",
        )
    fd, name = tempfile.mkstemp(dir=session.path, prefix=".whole-")
    whole = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for index in range(session.chunks):
                with open(session.path / f"{index}.chunk", "rb") as src:
                    while block := src.read(BUFFER):
                        digest.update(block)
                        out.write(block)
        actual = "sha256:" + digest.hexdigest()
        if actual != session.digest:
            shutil.rmtree(session.path, ignore_errors=True)
            raise IntegrityError(
                f"uploaded chunks hash to {actual}, not {session.digest}; nothing stored",
                digest=session.digest,
            )
        put = blobs.put_file(whole)
        blobs.sync()
    finally:
        whole.unlink(missing_ok=True)
    shutil.rmtree(session.path, ignore_errors=True)
    return {"digest": put.digest, "size": put.size, "stored": put.stored}


def sweep(home: Path, *, spool_age: float = 86_400, session_age: float = 7 * 86_400) -> int:
    """Remove what interrupted transfers left: spool files older than *spool_age* seconds
    and upload sessions untouched for *session_age* (the server does this at start)."""
    import time

    now, removed = time.time(), 0
    for entry in spool_dir(home).iterdir():
        try:
            age = now - entry.stat().st_mtime
            if entry.is_dir():
                newest = max((p.stat().st_mtime for p in entry.iterdir()), default=0.0)
                if now - max(newest, entry.stat().st_mtime) > session_age:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            elif entry.name.startswith(".in-") and age > spool_age:
                entry.unlink(missing_ok=True)
                removed += 1
        except FileNotFoundError:  # another replica swept it first
            continue
    return removed
