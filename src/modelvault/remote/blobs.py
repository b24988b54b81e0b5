"""A ``BlobStore`` whose blobs live on a modelvault server: the client side of transfers.

Files from ``CHUNKED_FROM`` bytes up go in chunks through a resumable session (a retry sends
only the chunks the server lacks). Unless this machine's digest cache knows such a file, it
is hashed as it is sent, in one pass: the session is opened on the file's size and a key
for it, and the digest is named when the upload completes; the server checks it against
what it hashed as it received and drops bytes it already holds. Smaller files, and large
ones whose digest is known, are hashed first and skipped when the server already has them
for this caller. Downloads are written through a temp file and renamed only
when the bytes hash to the digest, so the digest is checked at both ends.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import queue
import threading
from collections.abc import Callable, Iterator
from io import FileIO
from pathlib import Path
from typing import Any

from ..blobs.base import PutResult, checked_digest
from ..blobs.copying import materialize
from ..canonical import sha256_digest
from ..errors import IntegrityError, InvalidInput, StoreError
from ..filecache import CacheKey, HashCache
from . import download, upload
from .http import Transport

CHUNKED_FROM = 256 << 20
CHUNK = 256 << 20
BLOCK = 1 << 20  # read, hashed while the cache holds it (2 MiB per core here), then sent
AHEAD = 8  # blocks read and hashed ahead of the one being sent (across chunk ends)
Progress = Callable[[int], None]


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def _read(path: Path, offset: int, length: int, progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            block = f.read(min(BLOCK, left))
            if not block:
                raise StoreError(f"{path} shrank while it was uploaded")
            left -= len(block)
            if progress is not None:
                progress(len(block))
            yield block


class _Ahead:
    """Reads *f* from its start and hashes it in a thread, a few blocks ahead of the caller
    (who sends them meanwhile: the hash and the send overlap). Blocks end at every multiple
    of *chunk*; each is handed on before its buffer is filled again."""

    def __init__(self, f: FileIO, size: int, chunk: int) -> None:
        self.f, self.size, self.chunk = f, size, chunk
        self.hasher = hashlib.sha256()
        self.free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        for _ in range(AHEAD):
            self.free.put(memoryview(bytearray(BLOCK)))
        self.filled: queue.SimpleQueue[tuple[memoryview, int] | BaseException] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="modelvault-upload-read")
        self.thread.daemon = True
        self.thread.start()

    def _run(self) -> None:
        offset = 0
        try:
            while offset < self.size:
                buffer = self.free.get()
                if buffer is None:
                    return
                want = min(BLOCK, self.chunk - offset % self.chunk, self.size - offset)
                n = self.f.readinto(buffer[:want])
                if not n:
                    raise StoreError(f"{self.f.name} shrank while it was uploaded")
                self.hasher.update(buffer[:n])
                offset += n
                self.filled.put((buffer, n))
        except BaseException as exc:
            self.filled.put(exc)

    def blocks(self, length: int, progress: Progress | None) -> Iterator[memoryview]:
        """The next *length* bytes."""
        while length > 0:
            item = self.filled.get()
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            yield buffer[:n]
            self.free.put(buffer)
            length -= n
            if progress is not None:
                progress(n)

    def digest(self) -> str:
        self.thread.join()
        return "sha256:" + self.hasher.hexdigest()

    def stop(self) -> None:
        self.free.put(None)
        self.thread.join()


def _key(path: Path, st: os.stat_result) -> CacheKey:
    return CacheKey(str(path.absolute()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class _Chunks:
    """A readable over an HTTP byte stream, for ``materialize``: each read fills the caller's
    buffer from as many network chunks as it takes (one copy per byte)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = memoryview(b"")

    def readinto(self, buffer: memoryview, /) -> int:
        filled = 0
        while filled < len(buffer):
            if not self._left:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._left = memoryview(chunk)
            n = min(len(buffer) - filled, len(self._left))
            buffer[filled : filled + n] = self._left[:n]
            self._left = self._left[n:]
            filled += n
        return filled


class RemoteBlobStore:
    """Blobs on the server behind *transport*."""

    def __init__(self, transport: Transport, digests: HashCache | None = None) -> None:
        self.transport = transport
        # digests this client saw stored on the server (asked, or uploaded): not asked again
        self.present: set[str] = set()
        self.digests = digests  # this machine's digests of unchanged files, if kept
        self.chunked_from = CHUNKED_FROM  # files this large go in chunks of self.chunk
        self.chunk = CHUNK

    def __repr__(self) -> str:
        return f"RemoteBlobStore({self.transport.url})"

    def missing(self, digests: list[str]) -> list[str]:
        ask = [d for d in digests if d not in self.present]
        found: list[str] = []
        for start in range(0, len(ask), 10_000):
            part = ask[start : start + 10_000]
            found += self.transport.call("POST", "/blobs/missing", json={"digests": part})[
                "missing"
            ]
        self.present.update(set(ask) - set(found))
        return found

    def exists(self, digest: str) -> bool:
        return not self.missing([checked_digest(digest)])

    def size(self, digest: str) -> int:
        response = self.transport.request("HEAD", f"/blobs/{checked_digest(digest)}")
        return int(response.headers["content-length"])

    def put_bytes(self, data: bytes) -> PutResult:
        digest = sha256_digest(data)
        if self.exists(digest):
            return PutResult(digest, len(data), False)
        self.transport.call(
            "PUT",
            f"/blobs/{digest}",
            content=bytes(data),
            headers={"Content-Length": str(len(data))},
        )
        self.present.add(digest)
        return PutResult(digest, len(data), True)

    def known_digest(self, path: Path) -> str | None:
        """*path*'s digest from this machine's cache, if it holds the file as it is now."""
        if self.digests is None:
            return None
        key = _key(path, os.stat(path))
        return self.digests.lookup([key]).get(key)

    def put_file(self, path: Path, *, progress: Progress | None = None) -> PutResult:
        path = Path(path)
        size = path.stat().st_size
        digest = self.known_digest(path) if size >= self.chunked_from else None
        if size >= self.chunked_from and digest is None:
            return self.send_file(path, progress=progress)
        digest = digest or file_digest(path)
        if self.exists(digest):
            if progress is not None:
                progress(size)
            return PutResult(digest, size, False)
        self.upload(path, digest, size, progress)
        return PutResult(digest, size, True)

    def upload(self, path: Path, digest: str, size: int, progress: Progress | None) -> None:
        """Send *path*'s bytes (known to hash to *digest*) to the server."""
        if size < self.chunked_from:
            self._put(f"/blobs/{digest}", _read(path, 0, size, progress), size)
        else:
            self.upload_chunked(path, digest, size, progress, self.chunk)
        self.present.add(digest)

    def upload_chunked(
        self, path: Path, digest: str, size: int, progress: Progress | None, chunk: int = CHUNK
    ) -> dict[str, Any]:
        session = self.transport.call(
            "POST", "/uploads", json={"digest": digest, "size": size, "chunk_size": chunk}
        )
        done = set(session["received"])
        step = int(session["chunk_size"])
        for index in range(int(session["chunks"])):
            length = min(step, size - index * step)
            if index in done:
                if progress is not None:
                    progress(length)
                continue
            # no per-chunk digest: hashing each chunk would be a second pass over the file,
            # and the server checks the whole against the digest before storing anything
            self._put(
                f"/uploads/{session['id']}/chunks/{index}",
                _read(path, index * step, length, progress),
                length,
            )
        result: dict[str, Any] = self.transport.call("POST", f"/uploads/{session['id']}/complete")
        return result

    def send_file(self, path: Path, *, progress: Progress | None = None) -> PutResult:
        """Upload *path* in chunks while hashing it: one read of the file. The server checks
        the digest named at completion against the bytes it received (and drops them if it
        holds the blob already). A session left by an interrupted attempt is resumed: its
        chunks are hashed here but not sent again."""
        path = Path(path)
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}", path=str(path)) from None
        with f:
            before = os.fstat(f.fileno())
            key = hashlib.sha256(repr(_key(path, before)).encode()).hexdigest()[:32]
            for attempt in (1, 2):
                session = self.transport.call(
                    "POST",
                    "/uploads",
                    json={"size": before.st_size, "chunk_size": self.chunk, "key": key},
                )
                resumed = attempt == 1 and bool(session["received"])
                digest = self._send_chunks(f, session, progress)
                after = os.fstat(f.fileno())
                if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                    raise InvalidInput(f"{path} changed while it was uploaded", path=str(path))
                try:
                    self.transport.call(
                        "POST", f"/uploads/{session['id']}/complete", json={"digest": digest}
                    )
                except IntegrityError:
                    if not resumed:
                        raise
                    # the chunks an earlier attempt left were not this file's bytes: the
                    # server ended that session, and a new one takes every chunk
                    continue
                break
        self.present.add(digest)
        if self.digests is not None:
            self.digests.store([(_key(path, before), digest)])
        return PutResult(digest, before.st_size, True)

    def _send_chunks(self, f: FileIO, session: dict[str, Any], progress: Progress | None) -> str:
        """Send the chunks *session* lacks, hash every one; the file's digest."""
        done = set(session["received"])
        step, size = int(session["chunk_size"]), int(session["size"])
        f.seek(0)
        ahead = _Ahead(f, size, step)
        try:
            for index in range(int(session["chunks"])):
                length = min(step, size - index * step)
                blocks = ahead.blocks(length, progress)
                if index in done:
                    for _ in blocks:  # sent by an earlier attempt: hashed, not sent again
                        pass
                    continue
                self._put(f"/uploads/{session['id']}/chunks/{index}", blocks, length)
            return ahead.digest()
        finally:
            ahead.stop()

    def _put(self, path: str, blocks: Iterator[memoryview] | Iterator[bytes], length: int) -> Any:
        """PUT the *length* bytes of *blocks* (each sent before the next is asked for)."""
        client = self.transport.client
        if self.transport.lean is not None and upload.usable(self.transport.url):
            self.transport._sent("PUT", path)
            headers = {k: v for k, v in client.headers.items() if k.lower() == "authorization"}
            timeout = client.timeout.read or 60.0
            return upload.put(self.transport.url, path, headers, blocks, length, timeout)
        return self.transport.call(
            "PUT",
            path,
            content=(bytes(block) for block in blocks),
            headers={"Content-Length": str(length)},
        )

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        response = self.transport.request("GET", f"/blobs/{checked_digest(digest)}")
        data = response.content
        if verify and (actual := sha256_digest(data)) != digest:
            raise IntegrityError(
                f"blob {digest} arrived corrupt: its content hashes to {actual}", digest=digest
            )
        return data

    def copy_to(self, digest: str, dest: Path, *, progress: Progress | None = None) -> int:
        path = f"/blobs/{checked_digest(digest)}"
        client = self.transport.client
        # a plain http:// server reached directly (no proxy, no client handed in): raw reads
        if self.transport.lean is not None and download.usable(self.transport.url):
            self.transport._sent("GET", path)
            headers = {k: v for k, v in client.headers.items() if k.lower() == "authorization"}
            timeout = client.timeout.read or 60.0
            with download.get(self.transport.url, path, headers, timeout) as raw:
                length = raw.getheader("content-length")
                try:
                    return materialize(
                        raw,
                        digest,
                        Path(dest),
                        expected_size=int(length) if length else None,
                        progress=progress,
                    )
                except http.client.HTTPException as exc:
                    raise StoreError(f"transfer from {self.transport.url} failed: {exc}") from None
        with self.transport.stream(path) as response:
            expected = response.headers.get("content-length")
            return materialize(
                _Chunks(response.iter_raw()),
                digest,
                Path(dest),
                expected_size=int(expected) if expected else None,
                progress=progress,
            )

    def verify(self, digest: str) -> bool:
        try:
            self.read_bytes(digest)
        except IntegrityError:
            return False
        return True

    def sync(self) -> None:
        """The server makes what it stores durable before it answers."""
