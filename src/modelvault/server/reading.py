"""Serving a local blob's bytes: read by a worker thread a few 8 MiB reads ahead of the
socket, from the page cache when the blob is there, else with ``O_DIRECT``.

Uploads are written with ``O_DIRECT`` (``writing``), as the local store writes its blobs, so
a blob is often not in the page cache; reading it through the cache would cost the kernel
about as much CPU as writing it through the cache (2 s per GiB on this kind of VM), a direct
read almost none. But a blob many clients pull (the production model, fetched by every
replica) is in the cache, and a direct read would go to the disk each time: so each block is
first asked of the cache without waiting (``RWF_NOWAIT``), and only what the cache does not
hold is read directly. A file system without direct I/O, or a kernel that cannot answer
without waiting, is read as it can be.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

READ = 8 << 20
AHEAD = 2  # reads done ahead of the socket
PAGE = 4096  # direct reads start at multiples of this
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # through the page cache
        self.direct_fd = -1  # opened at the first block the cache does not hold
        self.direct = bool(_O_DIRECT)  # may this file be read directly
        self.nowait = bool(_NOWAIT)  # can the kernel say what the cache holds
        self.path = path
        self.size = os.fstat(self.fd).st_size
        self.buffer = mmap.mmap(-1, READ)  # page-aligned, as O_DIRECT needs
        self.offset = 0
        self.direct_reads = 0

    def _cached(self) -> int | None:
        """Bytes read from the page cache without waiting (a whole number of pages, or up
        to the end), or None when the cache does not hold the next page."""
        try:
            n = os.preadv(self.fd, [self.buffer], self.offset, _NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            self.nowait = False  # this kernel or file system cannot say
            return None
        if self.offset + n < self.size:
            n -= n % PAGE  # keep the next read aligned for a direct one
        return n or None

    def _direct(self) -> int | None:
        """Bytes read past the cache, or None when this file cannot be read so."""
        try:
            if self.direct_fd < 0:
                self.direct_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | _O_DIRECT)
            n = os.preadv(self.direct_fd, [self.buffer], self.offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.direct = False  # direct I/O refused here: through the cache
            return None
        self.direct_reads += 1
        return n

    def read(self) -> bytes:
        """The next block (empty at the end)."""
        if self.offset >= self.size:
            return b""
        n = self._cached() if self.nowait and self.direct else None
        if n is None and self.direct and self.offset % PAGE == 0:
            n = self._direct()
        if n is None:
            n = os.preadv(self.fd, [self.buffer], self.offset)
        self.offset += n
        return self.buffer[:n]

    def close(self) -> None:
        os.close(self.fd)
        if self.direct_fd >= 0:
            os.close(self.direct_fd)
        self.buffer.close()


class BlobFileResponse(Response):
    """The file at *path* (*size* bytes) as the body."""

    def __init__(self, path: Path, size: int, headers: dict[str, str]) -> None:
        super().__init__(
            b"",
            media_type="application/octet-stream",
            headers={**headers, "content-length": str(size)},
        )
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        reader = await anyio.to_thread.run_sync(_Reader, self.path)
        try:
            sending, receiving = anyio.create_memory_object_stream[bytes](AHEAD)
            async with anyio.create_task_group() as group:

                async def produce() -> None:
                    async with sending:
                        while block := await anyio.to_thread.run_sync(reader.read):
                            await sending.send(block)

                group.start_soon(produce)
                async with receiving:
                    async for block in receiving:
                        await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            reader.close()
