"""Streaming SHA-256 + copy: one thread reads and hashes while another writes.

Owns the byte-moving part shared by every blob store: ingesting a caller's file, hashing a
stream, and materializing verified bytes at a destination path. It knows nothing of naming.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import mmap
import os
import queue
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..canonical import DIGEST_PREFIX, sha256_digest
from ..errors import IntegrityError, InvalidInput, StoreError

CHUNK = 4 * 1024 * 1024
BUFFERS = 4
SYNC_EVERY = 64 * 1024 * 1024
ALIGN = 4096
HASH_STEP = 1 << 20  # read and hashed at once, while the processor's cache holds it
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_fdatasync = getattr(os, "fdatasync", os.fsync)

Progress = Callable[[int], None]


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Sink(Protocol):
    def begin(self, aligned: bool) -> None: ...
    def write(self, data: memoryview, /) -> None: ...
    def sync(self) -> None: ...


class StreamError(Exception):
    """An OSError from one side of a copy; ``error`` is the original."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class SourceError(StreamError):
    """Reading the source failed."""


class SinkError(StreamError):
    """Writing or syncing the destination failed."""


class SizeChanged(Exception):
    """The source delivered more or fewer bytes than its size said."""


@dataclass(frozen=True, slots=True)
class Copied:
    digest: str
    size: int


class FdSink:
    """Writes to a file descriptor, with O_DIRECT while the writes are page-aligned.

    Direct writes skip the page cache, whose buffered-write path costs more CPU than hashing
    on small VMs; any unaligned write or EINVAL falls back to ordinary buffered writes.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.direct = False
        self._unsynced = 0

    def _set_direct(self, on: bool) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
        self.direct = on

    def begin(self, aligned: bool) -> None:
        if aligned and _O_DIRECT:
            try:
                self._set_direct(True)
            except OSError:
                self.direct = False

    def write(self, data: memoryview, /) -> None:
        while data:
            if self.direct and len(data) % ALIGN:
                self._set_direct(False)
            try:
                written = os.write(self.fd, data)
            except OSError as exc:
                if not (self.direct and exc.errno == errno.EINVAL):
                    raise
                self._set_direct(False)
                continue
            data = data[written:]
            if not self.direct:
                self._unsynced += written

    def sync(self) -> None:
        if self._unsynced:
            _fdatasync(self.fd)
            self._unsynced = 0


class BufferSink:
    """Collects the bytes in memory (the memory store's sink)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def begin(self, aligned: bool) -> None:
        pass

    def write(self, data: memoryview, /) -> None:
        self.data += data

    def sync(self) -> None:
        pass


class _Hashing:
    """Running digest and byte count of a stream checked against its expected size."""

    def __init__(self, expected: int | None, progress: Progress | None) -> None:
        self.hasher = hashlib.sha256()
        self.total = 0
        self.expected = expected
        self.progress = progress

    def read(self, source: Readable, view: memoryview) -> int:
        """Fill *view* from *source* (less only at its end), hashing each piece while the
        processor's cache still holds it; the bytes read (0: the source is exhausted)."""
        n = 0
        while n < len(view):
            piece = view[n : n + HASH_STEP]
            try:
                got = source.readinto(piece) or 0
            except OSError as exc:
                raise SourceError(exc) from None
            if not got:
                break
            self.total += got
            if self.expected is not None and self.total > self.expected:
                raise SizeChanged
            self.hasher.update(piece[:got])
            n += got
        return n

    def done(self) -> Copied:
        if self.expected is not None and self.total != self.expected:
            raise SizeChanged
        return Copied(DIGEST_PREFIX + self.hasher.hexdigest(), self.total)


def copy_stream(
    source: Readable,
    sink: Sink | None,
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
) -> Copied:
    """Hash *source* to EOF, writing each chunk to *sink*; the caller does the final fsync.

    Raises SourceError, SinkError, or SizeChanged when *expected_size* is given and wrong.
    """
    state = _Hashing(expected_size, progress)
    if sink is not None and (expected_size is None or expected_size > CHUNK):
        return _copy_pipelined(source, sink, state)
    # Small sources get a buffer of their size + 1, so a read of 0 proves EOF cheaply.
    view = memoryview(bytearray(CHUNK if expected_size is None else min(CHUNK, expected_size + 1)))
    if sink is not None:
        sink.begin(aligned=False)
    while n := state.read(source, view):
        if sink is not None:
            try:
                sink.write(view[:n])
            except OSError as exc:
                raise SinkError(exc) from None
        if state.progress is not None:
            state.progress(n)
    return state.done()


def _copy_pipelined(source: Readable, sink: Sink, state: _Hashing) -> Copied:
    free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
    filled: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    for _ in range(BUFFERS):
        free.put(memoryview(mmap.mmap(-1, CHUNK)))  # page-aligned, as O_DIRECT needs
    failures: list[BaseException] = []

    def writer() -> None:
        unsynced = 0
        while (item := filled.get()) is not None:
            view, n = item
            if not failures:
                try:
                    sink.write(view[:n])
                    unsynced += n
                    if unsynced >= SYNC_EVERY:
                        sink.sync()
                        unsynced = 0
                except BaseException as exc:
                    failures.append(exc)
            free.put(view)

    sink.begin(aligned=True)
    thread = threading.Thread(target=writer, name="modelvault-blob-writer", daemon=True)
    thread.start()
    try:
        while not failures:
            view = free.get()
            if not (n := state.read(source, view)):
                break
            filled.put((view, n))
            if state.progress is not None:
                state.progress(n)
    finally:
        filled.put(None)
        thread.join()
    if failures:
        raise SinkError(failures[0]) if isinstance(failures[0], OSError) else failures[0]
    return state.done()


def ingest_file(path: Path, sink: Sink, progress: Progress | None = None) -> Copied:
    """Stream the caller's regular file at *path* into *sink*.

    Problems with the file itself raise InvalidInput; write failures raise SinkError.
    """
    try:
        # O_NONBLOCK so that opening a FIFO by mistake cannot hang; no effect on files.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidInput(f"path does not exist: {path}", path=str(path)) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", path=str(path)) from None
    changed = InvalidInput(f"file changed while it was being read: {path}", path=str(path))
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        os.close(fd)
        raise InvalidInput(f"{path} is not a regular file", path=str(path))
    with open(fd, "rb", buffering=0) as source:
        os.set_blocking(fd, True)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        try:
            copied = copy_stream(source, sink, expected_size=before.st_size, progress=progress)
        except SourceError as exc:
            message = f"cannot read {path}: {exc.error.strerror}"
            raise InvalidInput(message, path=str(path)) from None
        except SizeChanged:
            raise changed from None
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise changed
    return copied


def store_error(exc: OSError, where: str) -> StoreError:
    """A StoreError with a one-line message for an OSError raised while writing *where*."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        message = f"disk full while writing {where}"
    elif exc.errno == errno.EROFS:
        message = f"cannot write {where}: the file system is read-only"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        message = f"cannot write {where}: permission denied"
    else:
        message = f"cannot write {where}: {exc.strerror or exc}"
    return StoreError(message, errno=exc.errno)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verified(data: bytes, digest: str) -> bytes:
    """*data* itself, or IntegrityError when it does not hash to *digest* (a corrupt blob)."""
    if (actual := sha256_digest(data)) != digest:
        raise IntegrityError(
            f"blob {digest} is corrupt: its content hashes to {actual}", digest=digest
        )
    return data


def materialize_bytes(
    data: bytes, digest: str, dest: Path, progress: Progress | None = None
) -> int:
    """``materialize`` for bytes held in memory."""
    return materialize(io.BytesIO(data), digest, dest, expected_size=len(data), progress=progress)


def materialize(
    source: Readable,
    digest: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Write *source* to *dest* via a temp file beside it, renamed only if it hashes to *digest*.

    Creates missing parent directories; the file gets the default mode (0o666 minus umask).
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.parent / f".modelvault-{secrets.token_hex(8)}.partial"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise store_error(exc, str(dest)) from None
    try:
        try:
            copied = copy_stream(source, FdSink(fd), expected_size=expected_size, progress=progress)
            if copied.digest != digest:
                message = f"blob {digest} is corrupt: its content hashes to {copied.digest}"
                raise IntegrityError(message, digest=digest)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, dest)
        fsync_dir(dest.parent)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, SizeChanged):
            message = f"blob {digest} is corrupt: its size changed while it was read"
            raise IntegrityError(message, digest=digest) from None
        if isinstance(exc, SourceError):
            message = f"cannot read blob {digest}: {exc.error.strerror}"
            raise StoreError(message, digest=digest) from None
        if isinstance(exc, SinkError | OSError):
            raise store_error(exc.error if isinstance(exc, SinkError) else exc, str(dest)) from None
        raise
    return copied.size
