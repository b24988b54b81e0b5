"""The local-disk blob store: ``ROOT/sha256/ab/<64 hex>`` files, read-only, written once.

Owns the write protocol (temp file in ``ROOT/tmp``, fsync, atomic rename, directory fsync)
that keeps a crash from ever leaving wrong bytes under a blob's final name.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

from ..canonical import DIGEST_PREFIX, hex_of, sha256_digest
from ..errors import NotFound, StoreError
from .base import PutResult, checked_digest
from .copying import (
    FdSink,
    SinkError,
    SourceError,
    copy_stream,
    fsync_dir,
    ingest_file,
    materialize,
    store_error,
    verified,
)

BLOB_MODE = 0o444


class LocalBlobStore:
    """Blobs as files under *root*; safe for many processes and threads at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._ready = False
        self._unsynced: set[Path] = set()
        self._lock = threading.Lock()
        # held through a round of directory fsyncs: a sync that finds nothing pending (another
        # thread took its directories) returns only once that thread's round is done
        self._syncing = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_of(self, digest: str) -> Path:
        """Where the blob *digest* lives (whether or not it exists)."""
        hexdigest = hex_of(checked_digest(digest))
        return self._blobs / hexdigest[:2] / hexdigest

    def exists(self, digest: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self.path_of(digest)).st_mode)
        except FileNotFoundError:
            return False

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path_of(digest)).st_size
        except FileNotFoundError:
            raise _missing(digest) from None

    def put_file(self, path: Path, *, progress: Callable[[int], None] | None = None) -> PutResult:
        fd, temp = self._new_temp()
        try:
            try:
                copied = ingest_file(Path(path), FdSink(fd), progress)
                final = self.path_of(copied.digest)
                if self._holds(final, copied.size):
                    temp.unlink(missing_ok=True)
                    return PutResult(copied.digest, copied.size, stored=False)
                self._seal(fd)
            finally:
                os.close(fd)
            self._publish(temp, final)
        except SinkError as exc:
            temp.unlink(missing_ok=True)
            raise store_error(exc.error, f"blob store {self.root}") from None
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise store_error(exc, f"blob store {self.root}") from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return PutResult(copied.digest, copied.size, stored=True)

    def put_bytes(self, data: bytes) -> PutResult:
        digest = sha256_digest(data)
        final = self.path_of(digest)
        if self._holds(final, len(data)):
            return PutResult(digest, len(data), stored=False)
        fd, temp = self._new_temp()
        try:
            try:
                FdSink(fd).write(memoryview(data))
                self._seal(fd)
            finally:
                os.close(fd)
            self._publish(temp, final)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise store_error(exc, f"blob store {self.root}") from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return PutResult(digest, len(data), stored=True)

    def staging_path(self, name: str | None = None) -> Path:
        """A temp file beside the blobs (same file system, so ``adopt`` is a rename) for a
        writer that hashes what it writes: a new empty one, or where the one called *name*
        is (not created here)."""
        fd, temp = self._new_temp(name)
        if fd >= 0:
            os.close(fd)
        return temp

    def adopt(self, temp: Path, digest: str, size: int) -> PutResult:
        """Store the staged file *temp* as blob *digest*: sealed (read-only, fsynced) and
        renamed into place. The caller has checked that its bytes hash to *digest*."""
        final = self.path_of(digest)
        try:
            if self._holds(final, size):
                temp.unlink(missing_ok=True)
                return PutResult(digest, size, stored=False)
            fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._seal(fd)
            finally:
                os.close(fd)
            self._publish(temp, final)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise store_error(exc, f"blob store {self.root}") from None
        return PutResult(digest, size, stored=True)

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise _missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {digest}: {exc.strerror}", digest=digest) from None
        return verified(data, digest) if verify else data

    def copy_to(
        self, digest: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> int:
        try:
            source = open(self.path_of(digest), "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise _missing(digest) from None
        with source:
            size = os.fstat(source.fileno()).st_size
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(source.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            return materialize(source, digest, Path(dest), expected_size=size, progress=progress)

    def verify(self, digest: str) -> bool:
        try:
            with open(self.path_of(digest), "rb", buffering=0) as source:
                return copy_stream(source, None).digest == digest
        except FileNotFoundError:
            raise _missing(digest) from None
        except SourceError as exc:
            raise StoreError(
                f"cannot read blob {digest}: {exc.error.strerror}", digest=digest
            ) from None

    def listing(self) -> list[tuple[str, int, float]]:
        """(digest, size, modification time) of every blob, for garbage collection."""
        out = []
        for digest in self.digests():
            try:
                st = os.stat(self.path_of(digest))
            except FileNotFoundError:
                continue
            out.append((digest, st.st_size, st.st_mtime))
        return out

    def delete(self, digest: str) -> bool:
        """Remove one blob (garbage collection is the only caller); False if it was gone."""
        try:
            os.unlink(self.path_of(digest))
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> list[str]:
        """Every blob name present, sorted (for verification and a later gc)."""
        found: list[str] = []
        if not self._blobs.is_dir():
            return found
        for shard in sorted(os.listdir(self._blobs)):
            shard_dir = self._blobs / shard
            if len(shard) == 2 and shard_dir.is_dir():
                found.extend(
                    DIGEST_PREFIX + name
                    for name in sorted(os.listdir(shard_dir))
                    if name.startswith(shard) and len(name) == 64
                )
        return found

    def stale_temp_files(self, older_than_seconds: float) -> list[Path]:
        """Temp files left by interrupted writes, last modified more than N seconds ago."""
        cutoff = time.time() - older_than_seconds
        stale: list[Path] = []
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return stale
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    stale.append(Path(entry.path))
            except FileNotFoundError:
                continue
        return sorted(stale)

    def _new_temp(self, name: str | None = None) -> tuple[int, Path]:
        try:
            if not self._ready:
                for directory in (self.root, self._blobs, self._tmp):
                    if not directory.is_dir():
                        directory.mkdir(parents=True, exist_ok=True)
                        fsync_dir(directory.parent)
                self._ready = True
            if name is None:
                fd, made = tempfile.mkstemp(prefix="put-", suffix=".partial", dir=self._tmp)
                return fd, Path(made)
            return -1, self._tmp / f"{name}.partial"
        except OSError as exc:
            raise store_error(exc, f"blob store {self.root}") from None

    @staticmethod
    def _seal(fd: int) -> None:
        os.fchmod(fd, BLOB_MODE)
        os.fsync(fd)

    @staticmethod
    def _holds(final: Path, size: int) -> bool:
        """True if *final* already holds a blob of *size* bytes.

        A blob of the wrong size is corrupt and gets replaced by the bytes being stored.
        """
        try:
            existing = os.stat(final)
        except FileNotFoundError:
            return False
        if not (stat.S_ISREG(existing.st_mode) and existing.st_size == size):
            return False
        # reused by a registration still in flight: garbage collection must see it as fresh
        # (blobs younger than its grace period are never collected)
        with suppress(OSError):
            os.utime(final)
        return True

    def _publish(self, temp: Path, final: Path) -> None:
        shard = final.parent
        try:
            os.mkdir(shard)
        except FileExistsError:
            pass
        else:
            fsync_dir(shard.parent)
        # Another writer may have published the same digest meanwhile: replacing its file
        # with identical bytes is harmless, and rename keeps the name always complete.
        os.rename(temp, final)
        with self._lock:
            self._unsynced.add(shard)

    def sync(self) -> None:
        with self._syncing:
            with self._lock:
                pending, self._unsynced = list(self._unsynced), set()
            try:
                if len(pending) == 1:
                    fsync_dir(pending[0])
                elif pending:
                    # concurrent fsyncs share journal commits: one round instead of one each;
                    # the first runs here, the others on the pool's standing threads (starting
                    # a thread per directory cost more than the fsync on a busy machine)
                    others = [_fsync_pool().submit(fsync_dir, d) for d in pending[1:]]
                    try:
                        fsync_dir(pending[0])
                    finally:
                        errors = [f.exception() for f in others]
                    failed = next((e for e in errors if e is not None), None)
                    if failed is not None:
                        raise failed
            except OSError as exc:
                with self._lock:
                    self._unsynced.update(pending)
                raise store_error(exc, f"blob store {self.root}") from None


_POOLS: dict[int, ThreadPoolExecutor] = {}  # by process: a forked child makes its own
_POOLS_LOCK = threading.Lock()


def _fsync_pool() -> ThreadPoolExecutor:
    """Threads for directory fsyncs run side by side (made on first use, kept)."""
    pid = os.getpid()
    with _POOLS_LOCK:
        pool = _POOLS.get(pid)
        if pool is None:
            _POOLS.clear()  # a parent's pool has no threads in this process
            pool = _POOLS[pid] = ThreadPoolExecutor(8, thread_name_prefix="modelvault-fsync")
        return pool


def _missing(digest: str) -> NotFound:
    return NotFound(f"blob {digest} not found", digest=digest)
