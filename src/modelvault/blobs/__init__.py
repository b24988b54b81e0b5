"""Content-addressed blob storage: the ``BlobStore`` contract and its backends.

Blobs are named ``sha256:<hex>`` of their bytes; the on-disk format is docs/storage-format.md.
"""

from .base import BlobStore, PutResult, open_blob_store
from .local import LocalBlobStore
from .memory import MemoryBlobStore

__all__ = ["BlobStore", "LocalBlobStore", "MemoryBlobStore", "PutResult", "open_blob_store"]
