"""Hashing a file tree for a dataset snapshot: in parallel, refusing files that change while
they are read, and skipping files whose (path, size, mtime, ctime, inode) the cache has seen.

A file modified within the same clock tick as its hashing would look unchanged later, so
entries younger than ``RACY_SECONDS`` are hashed but not cached (git's "racy clean" rule).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .domain import FileEntry
from .errors import InvalidInput
from .filecache import CacheKey, HashCache
from .manifest import ScannedFile, scan

RACY_SECONDS = 2.0
CHUNK = 1 << 20


def _key(item: ScannedFile) -> CacheKey:
    return CacheKey(
        path=str(item.source),
        size=item.size,
        mtime_ns=item.mtime_ns,
        ctime_ns=item.ctime_ns,
        inode=item.inode,
    )


def _same(a: os.stat_result, b: CacheKey) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) == (b.size, b.mtime_ns, b.inode)


def _changed(rel: str) -> InvalidInput:
    return InvalidInput(
        f"{rel} changed while it was being hashed; snapshot it again once it is stable",
        path=rel,
    )


def hash_file(
    source: Path, rel: str, before: CacheKey, progress: Callable[[int], None] | None = None
) -> str:
    """SHA-256 of *source*, refusing it if it is not the file *before* describes, or if its
    size, mtime or inode move while it is read."""
    sha = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    read = 0
    try:
        with open(source, "rb", buffering=0) as fh:
            if not _same(os.fstat(fh.fileno()), before):
                raise _changed(rel)
            while n := fh.readinto(buf):
                sha.update(view[:n])
                read += n
                if progress is not None:
                    progress(n)
            after = os.fstat(fh.fileno())
        now = os.stat(source)
    except OSError as exc:
        raise InvalidInput(f"cannot read {rel}: {exc.strerror}", path=rel) from None
    if read != before.size or not _same(after, before) or not _same(now, before):
        raise _changed(rel)
    return "sha256:" + sha.hexdigest()


def hash_tree(
    root: Path,
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    racy_seconds: float = RACY_SECONDS,
) -> list[FileEntry]:
    """The manifest entries of every file under *root* (or *root* itself), sorted by path.

    Files changed less than *racy_seconds* before hashing began are not cached."""
    files = scan(root, check_readable=False)  # hashing reports unreadable files
    keyed = [(item, _key(item)) for item in files]
    known = cache.lookup([k for _, k in keyed]) if cache is not None else {}
    digests: dict[str, str] = {}
    misses: list[tuple[ScannedFile, CacheKey]] = []
    for item, key in keyed:
        hit = known.get(key)
        if hit is not None:
            digests[item.path] = hit
        else:
            misses.append((item, key))
    # biggest first, so one large file does not start last and leave the other workers idle
    misses.sort(key=lambda m: -m[1].size)
    started = time.time()
    count = workers or min(16, 2 * (os.cpu_count() or 1))
    if len(misses) <= 1 or count == 1:
        results = [hash_file(i.source, i.path, key, progress) for i, key in misses]
    else:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="mv-hash") as pool:
            results = list(
                pool.map(lambda m: hash_file(m[0].source, m[0].path, m[1], progress), misses)
            )
    fresh: list[tuple[CacheKey, str]] = []
    for (item, key), digest in zip(misses, results, strict=True):
        digests[item.path] = digest
        newest = max(key.mtime_ns, key.ctime_ns) / 1e9
        if started - newest > racy_seconds:
            fresh.append((key, digest))
    if cache is not None and fresh:
        cache.store(fresh)
    return [
        FileEntry(path=item.path, size=key.size, digest=digests[item.path], mode=item.mode)
        for item, key in keyed
    ]


def total_size(entries: Sequence[FileEntry]) -> int:
    return sum(e.size for e in entries)
