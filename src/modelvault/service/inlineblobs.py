"""Small blobs kept in the metadata store, committed in the transaction of the version that
names them.

A local registration reads its small files into memory (``manifest.stage_files``); a client
registering through the server sends them inside the registration (``remote.INLINE_FILE``).
Each one up to ``MODELVAULT_INLINE_BLOB_MAX`` (64 KiB by default), and the manifest, is
written as a row of ``mv_inline_blobs`` by the version's own transaction, instead of as a
file of the local store (a new inode, its fsync, its directory's fsync) or an S3 object (a
PUT each): the bytes and the record that names them commit together, or neither does.
(SQLite's own measurements find blobs under about 100 KB faster to read from the database
file than from files of their own.)

``InlineBlobs`` is the blob store every use-case sees: it answers for those rows first and
hands everything else to the configured store, which keeps receiving every blob written any
other way. Garbage collection lists and deletes rows as it does files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Executable, delete, select

from ..blobs.base import BlobStore, PutResult
from ..blobs.copying import materialize_bytes, verified
from ..canonical import sha256_digest
from ..sizes import parse_size
from ..store import lean, schema
from ..store.engine import MetadataStore
from ..timeutil import from_text

_T = schema.inline_blobs


@cache
def inline_limit(text: str) -> int:
    """``MODELVAULT_INLINE_BLOB_MAX`` in bytes (0: nothing is kept inline)."""
    return parse_size(text, "MODELVAULT_INLINE_BLOB_MAX")


@cache
def _upsert(dialect: str) -> Executable:
    """The dialect's INSERT of rows: a digest already held is stored again "now", as a reused
    blob file is touched, so garbage collection sees it as young (its grace period), whatever
    version it was first sent with. Loaded with the dialect in use only."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(_T)
        return pg.on_conflict_do_update(
            index_elements=[_T.c.digest], set_={"stored_at": pg.excluded.stored_at}
        )
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    lite = sqlite_insert(_T)
    return lite.on_conflict_do_update(
        index_elements=[_T.c.digest], set_={"stored_at": lite.excluded.stored_at}
    )


def insert(conn: Connection, blobs: Mapping[str, bytes], at: str) -> None:
    """Store *blobs* (digest -> bytes, each already checked against its digest) in the
    transaction of *conn*."""
    if blobs:
        lean.run_many(
            conn,
            _upsert(conn.dialect.name),
            [{"digest": d, "size": len(b), "data": b, "stored_at": at} for d, b in blobs.items()],
        )


class InlineBlobs:
    """The blob store of a registry: rows of ``mv_inline_blobs`` first, then *inner*.

    Attributes *inner* has beyond the ``BlobStore`` protocol (``path_of``, ``root``, staging
    of uploads, ``presigned_get``) are reached through this object as through *inner*; a
    backend's own checks for them (``hasattr``) answer as before.
    """

    def __init__(self, inner: BlobStore, store: MetadataStore) -> None:
        self.inner = inner
        self._store = store
        # a local store answers "is it here?" with a stat, cheaper than a query; an object
        # store with a request, dearer than one
        self._inner_first = hasattr(inner, "path_of")

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        if name == "presigned_get":
            return self._presigned_get(getattr(self.inner, name))
        if name in ("listing", "delete"):
            return getattr(self, f"_{name}")(getattr(self.inner, name))
        return getattr(self.inner, name)

    def held(self, digest: str) -> bytes | None:
        """The bytes of *digest* if they are kept inline, else None."""
        with self._store.read(snapshot=False) as conn:
            data = conn.execute(select(_T.c.data).where(_T.c.digest == digest)).scalar()
        return None if data is None else bytes(data)

    def _held_size(self, digest: str) -> int | None:
        with self._store.read(snapshot=False) as conn:
            size = conn.execute(select(_T.c.size).where(_T.c.digest == digest)).scalar()
        return None if size is None else int(size)

    def exists(self, digest: str) -> bool:
        if self._inner_first:
            return self.inner.exists(digest) or self._held_size(digest) is not None
        return self._held_size(digest) is not None or self.inner.exists(digest)

    def size(self, digest: str) -> int:
        held = self._held_size(digest)
        return held if held is not None else self.inner.size(digest)

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        data = self.held(digest)
        if data is None:
            return self.inner.read_bytes(digest, verify=verify)
        return verified(data, digest) if verify else data

    def copy_to(
        self, digest: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> int:
        data = self.held(digest)
        if data is None:
            return self.inner.copy_to(digest, dest, progress=progress)
        return materialize_bytes(data, digest, Path(dest), progress)

    def verify(self, digest: str) -> bool:
        data = self.held(digest)
        if data is None:
            return self.inner.verify(digest)
        return sha256_digest(data) == digest

    def put_file(self, path: Path, *, progress: Callable[[int], None] | None = None) -> PutResult:
        return self.inner.put_file(path, progress=progress)

    def put_bytes(self, data: bytes) -> PutResult:
        return self.inner.put_bytes(data)

    def sync(self) -> None:
        self.inner.sync()

    def _listing(
        self, inner: Callable[[], list[tuple[str, int, float]]]
    ) -> Callable[[], list[tuple[str, int, float]]]:
        def listing() -> list[tuple[str, int, float]]:
            """Every blob, inline or not: (digest, size, time stored), once per digest; one
            kept both ways has the later of its two times (a file just reused is young)."""
            with self._store.read() as conn:
                rows = conn.execute(select(_T.c.digest, _T.c.size, _T.c.stored_at)).all()
            found = {str(d): (str(d), int(s), from_text(str(t)).timestamp()) for d, s, t in rows}
            for digest, size, when in inner():
                held = found.get(digest)
                found[digest] = (digest, size, max(when, held[2]) if held else when)
            return sorted(found.values())

        return listing

    def _delete(self, inner: Callable[[str], bool]) -> Callable[[str], bool]:
        def delete_blob(digest: str) -> bool:
            """Remove *digest* wherever it is kept (garbage collection is the only caller);
            False if it was nowhere."""
            with self._store.write() as conn:
                held = conn.execute(delete(_T).where(_T.c.digest == digest)).rowcount
            return bool(inner(digest)) or bool(held)

        return delete_blob

    def _presigned_get(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        def presigned_get(digest: str, *args: Any, **kwargs: Any) -> Any:
            """A URL of the object store for *digest*; a blob kept inline is written there
            first (once: blobs are write-once), so that the URL finds it."""
            data = self.held(digest)
            if data is not None and not self.inner.exists(digest):
                self.inner.put_bytes(data)
            return inner(digest, *args, **kwargs)

        return presigned_get
