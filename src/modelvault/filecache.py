"""The per-machine cache of file digests used by snapshots: a small SQLite file under the
cache directory, keyed by (path, size, mtime, ctime, inode).

It is only an accelerator: if it cannot be opened, read or written, snapshots still work and
hash everything. It never leaves the machine (inode numbers mean nothing elsewhere).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CacheKey:
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID
"""


class HashCache:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            return conn
        except (sqlite3.Error, OSError):
            return None

    def lookup(self, keys: Sequence[CacheKey]) -> dict[CacheKey, str]:
        """Digests of the keys the cache holds exactly (same size, times and inode)."""
        if not keys:
            return {}
        conn = self._connect()
        if conn is None:
            return {}
        wanted = {k.path: k for k in keys}
        found: dict[CacheKey, str] = {}
        try:
            lo, hi = min(wanted), max(wanted)
            for path, size, mtime, ctime, inode, digest in conn.execute(
                "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM file_digests "
                "WHERE path >= ? AND path <= ?",
                (lo, hi),
            ):
                key = wanted.get(path)
                if key is not None and key == CacheKey(path, size, mtime, ctime, inode):
                    found[key] = digest
        except sqlite3.Error:
            return {}
        finally:
            conn.close()
        return found

    def store(self, entries: Iterable[tuple[CacheKey, str]]) -> None:
        conn = self._connect()
        if conn is None:
            return
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?)",
                    [(k.path, k.size, k.mtime_ns, k.ctime_ns, k.inode, d) for k, d in entries],
                )
        except sqlite3.Error:
            pass
        finally:
            conn.close()
