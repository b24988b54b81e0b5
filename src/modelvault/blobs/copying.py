"""Streaming SHA-256 + copy: one thread reads and hashes while another writes and syncs.

Owns the byte-moving part shared by every blob store: ingesting a caller's file, hashing a
stream, and materializing verified bytes at a destination path. It knows nothing of naming.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..canonical import DIGEST_PREFIX
from ..errors import IntegrityError, InvalidInput, StoreError

CHUNK = 4 * 1024 * 1024
BUFFERS = 4
SYNC_EVERY = 64 * 1024 * 1024

Progress = Callable[[int], None]


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Sink(Protocol):
    def write(self, data: memoryview, /) -> None: ...
    def sync(self) -> None: ...


class SourceError(Exception):
    """Reading the source failed; ``error`` is the OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class SinkError(Exception):
    """Writing or syncing the destination failed; ``error`` is the OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class SizeChanged(Exception):
    """The source delivered more or fewer bytes than its size said."""


@dataclass(frozen=True, slots=True)
class Copied:
    digest: str
    size: int


class FdSink:
    """Writes to a file descriptor; ``sync`` is fdatasync."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: memoryview, /) -> None:
        while data:
            data = data[os.write(self.fd, data) :]

    def sync(self) -> None:
        os.fdatasync(self.fd)


class BufferSink:
    """Collects the bytes in memory (the memory store's sink)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: memoryview, /) -> None:
        self.data += data

    def sync(self) -> None:
        pass


def _read(source: Readable, view: memoryview) -> int:
    try:
        return source.readinto(view) or 0
    except OSError as exc:
        raise SourceError(exc) from None


def _check_size(total: int, expected: int | None, *, final: bool) -> None:
    if expected is not None and (total > expected or (final and total != expected)):
        raise SizeChanged(f"expected {expected} bytes, read {total}")


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
    if sink is not None and (expected_size is None or expected_size > CHUNK):
        return _copy_pipelined(source, sink, expected_size, progress)
    hasher = hashlib.sha256()
    # Small sources get a buffer of their size + 1, so a read of 0 proves EOF cheaply.
    size = CHUNK if expected_size is None else min(CHUNK, expected_size + 1)
    view = memoryview(bytearray(size))
    total = 0
    while n := _read(source, view):
        total += n
        _check_size(total, expected_size, final=False)
        hasher.update(view[:n])
        if sink is not None:
            try:
                sink.write(view[:n])
            except OSError as exc:
                raise SinkError(exc) from None
        if progress is not None:
            progress(n)
    _check_size(total, expected_size, final=True)
    return Copied(DIGEST_PREFIX + hasher.hexdigest(), total)


def _copy_pipelined(
    source: Readable, sink: Sink, expected_size: int | None, progress: Progress | None
) -> Copied:
    free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
    filled: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    for _ in range(BUFFERS):
        free.put(memoryview(bytearray(CHUNK)))
    failures: list[OSError] = []

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
                except OSError as exc:
                    failures.append(exc)
            free.put(view)

    thread = threading.Thread(target=writer, name="modelvault-blob-writer", daemon=True)
    thread.start()
    hasher = hashlib.sha256()
    total = 0
    try:
        while not failures:
            view = free.get()
            n = _read(source, view)
            if not n:
                break
            total += n
            _check_size(total, expected_size, final=False)
            hasher.update(view[:n])
            filled.put((view, n))
            if progress is not None:
                progress(n)
    finally:
        filled.put(None)
        thread.join()
    if failures:
        raise SinkError(failures[0])
    _check_size(total, expected_size, final=True)
    return Copied(DIGEST_PREFIX + hasher.hexdigest(), total)


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
    with open(fd, "rb", buffering=0) as source:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise InvalidInput(f"{path} is not a regular file", path=str(path))
        os.set_blocking(fd, True)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        changed = InvalidInput(f"file changed while it was being read: {path}", path=str(path))
        try:
            copied = copy_stream(source, sink, expected_size=before.st_size, progress=progress)
        except SourceError as exc:
            raise InvalidInput(
                f"cannot read {path}: {exc.error.strerror}", path=str(path)
            ) from None
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
    parent = dest.parent
    where = str(dest)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        temp = parent / f".modelvault-{secrets.token_hex(8)}.partial"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise store_error(exc, where) from None
    try:
        try:
            copied = copy_stream(source, FdSink(fd), expected_size=expected_size, progress=progress)
            if copied.digest == digest:
                os.fsync(fd)
        finally:
            os.close(fd)
        if copied.digest != digest:
            raise IntegrityError(
                f"blob {digest} is corrupt: its content hashes to {copied.digest}",
                digest=digest,
            )
        os.rename(temp, dest)
        fsync_dir(parent)
    except SizeChanged:
        temp.unlink(missing_ok=True)
        raise IntegrityError(
            f"blob {digest} is corrupt: its size changed while it was read", digest=digest
        ) from None
    except SourceError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(
            f"cannot read blob {digest}: {exc.error.strerror}", digest=digest
        ) from None
    except SinkError as exc:
        temp.unlink(missing_ok=True)
        raise store_error(exc.error, where) from None
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise store_error(exc, where) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return copied.size
