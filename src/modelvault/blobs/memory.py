"""The in-memory blob store: a dict from digest to bytes, with the local store's semantics.

Owns the fake used by tests and documentation examples; ``copy_to`` writes real files the
same careful way (temp file, verify, rename) as the local store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..canonical import sha256_digest
from ..errors import NotFound
from .base import PutResult, checked_digest
from .copying import BufferSink, ingest_file, materialize_bytes, verified


class MemoryBlobStore:
    """Blobs kept in a dict; nothing survives the process."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._times: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBlobStore({len(self._blobs)} blobs)"

    def exists(self, digest: str) -> bool:
        return checked_digest(digest) in self._blobs

    def listing(self) -> list[tuple[str, int, float]]:
        with self._lock:
            return [(d, len(b), self._times.get(d, 0.0)) for d, b in sorted(self._blobs.items())]

    def delete(self, digest: str) -> bool:
        with self._lock:
            self._times.pop(digest, None)
            return self._blobs.pop(digest, None) is not None

    def size(self, digest: str) -> int:
        return len(self._get(digest))

    def put_file(self, path: Path, *, progress: Callable[[int], None] | None = None) -> PutResult:
        sink = BufferSink()
        copied = ingest_file(Path(path), sink, progress)
        return self._put(copied.digest, bytes(sink.data))

    def put_bytes(self, data: bytes) -> PutResult:
        return self._put(sha256_digest(data), bytes(data))

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        data = self._get(digest)
        return verified(data, digest) if verify else data

    def copy_to(
        self, digest: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> int:
        return materialize_bytes(self._get(digest), digest, Path(dest), progress)

    def verify(self, digest: str) -> bool:
        return sha256_digest(self._get(digest)) == digest

    def sync(self) -> None:
        """Nothing to make durable in memory."""

    def digests(self) -> list[str]:
        return sorted(self._blobs)

    def _get(self, digest: str) -> bytes:
        try:
            return self._blobs[checked_digest(digest)]
        except KeyError:
            raise NotFound(f"blob {digest} not found", digest=digest) from None

    def _put(self, digest: str, data: bytes) -> PutResult:
        with self._lock:
            existing = self._blobs.get(digest)
            stored = existing is None or len(existing) != len(data)
            if stored:
                self._blobs[digest] = data
            self._times[digest] = time.time()  # a re-put is a fresh use, as a file's mtime
        return PutResult(digest, len(data), stored=stored)
