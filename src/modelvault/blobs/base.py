"""The blob store contract: content-addressed, write-once storage of byte strings.

Owns the ``BlobStore`` protocol every backend implements, ``PutResult``, and the
``open_blob_store`` factory that maps a store URL's scheme to a backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from ..canonical import is_digest
from ..errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from ..settings import Settings


@dataclass(frozen=True)
class PutResult:
    """The digest and size of stored bytes; ``stored`` is False when they were already there."""

    digest: str
    size: int
    stored: bool


def checked_digest(digest: str) -> str:
    """*digest* itself, or InvalidInput when it is not a well-formed blob name."""
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidInput(
            f"digest must look like sha256:<64 lowercase hex digits>, got {str(digest)[:80]!r}",
            field="digest",
        )
    return digest


class BlobStore(Protocol):
    """Blobs are named ``sha256:<hex>`` of their bytes, written once and never changed.

    ``progress`` callbacks receive the number of bytes just processed (a delta).
    """

    def exists(self, digest: str) -> bool: ...

    def put_file(
        self, path: Path, *, progress: Callable[[int], None] | None = None
    ) -> PutResult: ...

    def put_bytes(self, data: bytes) -> PutResult: ...

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes: ...

    def copy_to(
        self, digest: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> int: ...

    def verify(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int: ...

    def sync(self) -> None:
        """Make the names of every blob put so far durable. A file's bytes are synced before
        it gets its name; the directory entries are synced here, together, so that callers
        pay for one round of directory syncs however many blobs they stored. Call it before
        committing metadata that refers to the blobs."""


def _open_local(url: str, settings: Settings | None = None) -> BlobStore:
    from .local import LocalBlobStore

    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(
                f"file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path",
                field="url",
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidInput(f"file URL {url!r} must hold an absolute path", field="url")
        return LocalBlobStore(Path(path))
    return LocalBlobStore(Path(url).expanduser())


def _open_memory(url: str, settings: Settings | None = None) -> BlobStore:
    from .memory import MemoryBlobStore

    return MemoryBlobStore()


def _open_s3(url: str, settings: Settings | None = None) -> BlobStore:
    try:
        from .s3 import open_s3
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("boto3", "botocore"):
            raise
        raise StoreError("the s3 blob store needs boto3: pip install 'modelvault[s3]'") from None
    return open_s3(url, settings)


_FACTORIES: dict[str, Callable[[str, Settings | None], BlobStore]] = {
    "file": _open_local,
    "memory": _open_memory,
    "s3": _open_s3,
}


def blob_scheme(url: str) -> str:
    """The scheme of a blob store's URL, lower case; "" for a plain path."""
    return urlsplit(url).scheme.lower() if "://" in url else ""


def open_blob_store(url: str, settings: Settings | None = None) -> BlobStore:
    """Open the store at *url*: ``file:///abs/path``, a plain path, ``s3://bucket/prefix``
    or ``memory://``. *settings* tunes backends that need more than a URL (S3 endpoint,
    timeouts); without it they are read from the environment."""
    if not url:
        raise InvalidInput("blob store URL is empty", field="url")
    scheme = blob_scheme(url)
    if not scheme:
        return _open_local(url)
    factory = _FACTORIES.get(scheme)
    if factory is None:
        supported = ", ".join(f"{name}://" for name in _FACTORIES)
        raise InvalidInput(
            f"unsupported blob store scheme {scheme!r}; supported: {supported} or a plain path",
            field="url",
        )
    return factory(url, settings)
