"""Blob puts running on standing threads while the caller goes on, and those threads.

A server registration stores the files sent with it and its manifest while its metadata
statements run, instead of before them: the writes and their fsyncs leave the request's
critical path. ``PendingPuts.wait`` is called just before the metadata commits, so bytes and
names are still durable before anything names them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as all_done
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import BlobStore, PutResult

_POOLS: dict[tuple[int, str], ThreadPoolExecutor] = {}  # by process: a forked child makes its own
_POOLS_LOCK = threading.Lock()


def standing_pool(purpose: str) -> ThreadPoolExecutor:
    """Threads for one *purpose* (``put``, ``fsync``), made on first use and kept: starting a
    thread per task cost more than the fsync on a busy machine. A task may wait for tasks of
    another purpose (a put for the directory fsyncs of its ``sync``), never of its own, so a
    full pool cannot wait on itself."""
    key = (os.getpid(), purpose)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            for stale in [k for k in _POOLS if k[0] != key[0]]:
                del _POOLS[stale]  # a parent's pool has no threads in this process
            pool = _POOLS[key] = ThreadPoolExecutor(8, thread_name_prefix=f"modelvault-{purpose}")
        return pool


def _put_durably(blobs: BlobStore, data: bytes) -> PutResult:
    stored = blobs.put_bytes(data)
    blobs.sync()
    return stored


class PendingPuts:
    """``put_bytes`` into *blobs* of each of *items* (digest -> bytes, the caller has hashed
    them), started now, side by side."""

    def __init__(self, blobs: BlobStore, items: Mapping[str, bytes]) -> None:
        self.blobs = blobs
        self.digests = frozenset(items)
        pool = standing_pool("put")
        self._futures: list[Future[PutResult]] = [
            pool.submit(_put_durably, blobs, data) for data in items.values()
        ]

    def wait(self) -> list[PutResult]:
        """Once every put has ended: their results, with every name durable (each put is
        followed by a ``sync`` on its thread; the one here returns at once unless another
        thread is making names durable); the first failure is raised instead."""
        all_done(self._futures)
        results = [f.result() for f in self._futures]
        self.blobs.sync()
        return results

    def settle(self) -> None:
        """Wait for every put to end, whatever its outcome (the caller failed already: its
        bytes are harmless, but nothing keeps running past the request)."""
        all_done(self._futures)
