"""The S3 blob store: objects ``PREFIX/sha256/ab/<64 hex>`` in any S3-compatible bucket.

Owns the write-once protocol over S3 (conditional puts; multipart uploads checked against
the digest before they complete, aborted otherwise) and verified, resumable reads.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as URLLib3Error

from ..canonical import DIGEST_PREFIX, hex_of, sha256_digest
from ..errors import IntegrityError, InvalidInput, NotFound, StoreError
from .base import PutResult, checked_digest
from .copying import (
    BufferSink,
    Copied,
    SizeChanged,
    copy_stream,
    ingest_file,
    materialize,
)
from .s3client import (
    MiB,
    S3Options,
    describe,
    error_code,
    http_status,
    new_client,
    one_line,
    parse_s3_url,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, GetObjectOutputTypeDef

    from ..settings import Settings

MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 << 40
PART_CONCURRENCY = 4
_STREAM_ERRORS = (BotoCoreError, URLLib3Error, OSError)
_HEX = re.compile(r"[0-9a-f]{64}")
REFRESH_AFTER = 600.0  # seconds; far below gc's grace period (1 hour by default)
MAX_COPY_SIZE = 5 << 30

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    """A request anyone may send without credentials until it expires: *method* on *url*
    with exactly these *headers* (they are part of the signature)."""

    method: str
    url: str
    headers: dict[str, str]


def open_s3(url: str, settings: Settings | None) -> S3BlobStore:
    """The store for ``s3://bucket/prefix``, reached as *settings* say."""
    from ..settings import Settings

    bucket, prefix = parse_s3_url(url, "S3 URL", field="url")
    options = S3Options.from_settings(settings or Settings.from_env())
    return S3BlobStore(bucket, prefix, options=options)


class S3BlobStore:
    """Blobs as objects in one bucket under *prefix*; safe for many processes and hosts.

    Credentials come from boto3's usual chain (environment, profile, instance role).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        options: S3Options | None = None,
        client: S3Client | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options or S3Options()
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._client = client
        self._client_lock = threading.Lock()
        self._bucket_seen = False

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r}, endpoint={self.endpoint!r})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def endpoint(self) -> str:
        return self._s3.meta.endpoint_url

    @property
    def _s3(self) -> S3Client:
        # Made on first use: importing boto3 and building a client take ~0.3 s, which
        # commands that never touch a blob should not pay.
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = new_client(self.options, max_connections=32)
        return self._client

    def key_of(self, digest: str) -> str:
        """The object key of the blob *digest* (whether or not it exists)."""
        hexdigest = hex_of(checked_digest(digest))
        return f"{self._base}sha256/{hexdigest[:2]}/{hexdigest}"

    # -- reading ------------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def size(self, digest: str) -> int:
        size = self._head(digest)
        if size is None:
            raise _missing(digest)
        return size

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        sink = BufferSink()
        with _ObjectReader(self, digest) as reader:
            try:
                copied = copy_stream(reader, sink, expected_size=reader.size)
            except SizeChanged:
                raise _corrupt(digest, "its size changed while it was read") from None
        if verify and copied.digest != digest:
            raise _corrupt(digest, f"its content hashes to {copied.digest}")
        return bytes(sink.data)

    def copy_to(
        self, digest: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> int:
        with _ObjectReader(self, digest) as reader:
            return materialize(
                reader, digest, Path(dest), expected_size=reader.size, progress=progress
            )

    def verify(self, digest: str) -> bool:
        with _ObjectReader(self, digest) as reader:
            try:
                return copy_stream(reader, None, expected_size=reader.size).digest == digest
            except SizeChanged:
                return False

    def sync(self) -> None:
        """Nothing to do: S3 has made an object durable before it answers the put."""

    # -- writing ------------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> PutResult:
        return self._put_object(sha256_digest(data), data)

    def put_file(self, path: Path, *, progress: Callable[[int], None] | None = None) -> PutResult:
        path = Path(path)
        try:
            size = os.stat(path).st_size
        except OSError:
            size = 0  # ingest_file names the problem
        if size <= self.options.multipart_threshold:
            sink = BufferSink()
            copied = ingest_file(path, sink, progress)
            return self._put_object(copied.digest, bytes(sink.data))
        # The key is the digest, known only at the end of a read: hash the file first, then
        # upload it to its final key, re-hashing what is sent and completing the upload only
        # if it matches. A temp key + server-side copy would double the bytes S3 moves and
        # leave garbage keys behind after a crash; two local reads are cheaper.
        first = ingest_file(path, _Discard())
        existing = self._head(first.digest)
        if existing is not None:
            result = self._already_stored(first.digest, existing, first.size)
            if progress is not None:
                progress(first.size)
            return result
        return self._put_multipart(path, first, progress)

    def _put_object(self, digest: str, data: bytes) -> PutResult:
        existing = self._head(digest)
        if existing is not None:
            return self._already_stored(digest, existing, len(data))
        key = self.key_of(digest)
        for _ in range(3):
            try:
                # ChecksumSHA256 makes S3 itself refuse bytes that do not match the name.
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    IfNoneMatch="*",
                    ChecksumSHA256=_b64(digest),
                )
            except ClientError as exc:
                if error_code(exc) == "PreconditionFailed":
                    return PutResult(digest, len(data), stored=False)
                if error_code(exc) == "ConditionalRequestConflict":
                    time.sleep(0.2)  # another conditional write of this key is in flight
                    continue
                raise self._error(exc, f"store blob {digest}", digest) from None
            except BotoCoreError as exc:
                raise self._error(exc, f"store blob {digest}", digest) from None
            return PutResult(digest, len(data), stored=True)
        raise StoreError(
            f"cannot store blob {digest} in {self.url}: concurrent writes kept conflicting",
            digest=digest,
            bucket=self.bucket,
        )

    def _put_multipart(self, path: Path, first: Copied, progress: Progress | None) -> PutResult:
        digest = first.digest
        key = self.key_of(digest)
        part_size = _part_size_for(first.size, self.options.part_size, path)
        changed = InvalidInput(f"file changed while it was being read: {path}", path=str(path))
        try:
            source = open(path, "rb", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}", path=str(path)) from None
        with source, self._translated(f"store blob {digest}", digest):
            before = os.fstat(source.fileno())
            upload_id = self._s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            try:
                parts, sent = self._send_parts(source, key, upload_id, part_size, first, progress)
                after = os.fstat(source.fileno())
                if sent != first or (after.st_size, after.st_mtime_ns) != (
                    before.st_size,
                    before.st_mtime_ns,
                ):
                    raise changed
                self._complete_once(key, upload_id, parts)
            except BaseException as exc:
                aborted = self._abort(key, upload_id)
                if isinstance(exc, ClientError) and error_code(exc) == "PreconditionFailed":
                    return PutResult(digest, first.size, stored=False)
                if isinstance(exc, OSError):
                    message = f"cannot read {path}: {exc.strerror}"
                    raise InvalidInput(message, path=str(path)) from None
                if not aborted and isinstance(exc, ClientError | BotoCoreError):
                    raise self._error(
                        exc,
                        f"store blob {digest}",
                        digest,
                        note="; its incomplete multipart upload could not be aborted",
                    ) from None
                raise
        return PutResult(digest, first.size, stored=True)

    def _send_parts(
        self,
        source: FileIO,
        key: str,
        upload_id: str,
        part_size: int,
        expected: Copied,
        progress: Progress | None,
    ) -> tuple[list[CompletedPartTypeDef], Copied]:
        """Read and hash *source* part by part while up to PART_CONCURRENCY parts upload."""
        hasher = hashlib.sha256()
        total = 0
        parts: list[CompletedPartTypeDef] = []
        pending: deque[tuple[int, int, Future[str]]] = deque()

        def settle_oldest() -> None:
            number, n, future = pending.popleft()
            parts.append({"PartNumber": number, "ETag": future.result()})
            if progress is not None:
                progress(n)

        pool = ThreadPoolExecutor(PART_CONCURRENCY, thread_name_prefix="modelvault-s3-part")
        try:
            while chunk := _read_part(source, part_size):
                total += len(chunk)
                if total > expected.size:
                    break  # growing; the caller sees the size differ
                hasher.update(chunk)
                number = len(parts) + len(pending) + 1
                future = pool.submit(self._upload_part, key, upload_id, number, chunk)
                pending.append((number, len(chunk), future))
                if len(pending) >= PART_CONCURRENCY:
                    settle_oldest()
            while pending:
                settle_oldest()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return parts, Copied(DIGEST_PREFIX + hasher.hexdigest(), total)

    def _upload_part(self, key: str, upload_id: str, number: int, chunk: bytes) -> str:
        return self._s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
        )["ETag"]

    def _complete_once(self, key: str, upload_id: str, parts: list[CompletedPartTypeDef]) -> None:
        """Finish a multipart upload only if *key* holds nothing yet (write-once): S3
        answers PreconditionFailed when it does."""
        self._s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )

    def _abort(self, key: str, upload_id: str) -> bool:
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            return isinstance(exc, ClientError) and error_code(exc) == "NoSuchUpload"
        return True

    def _already_stored(self, digest: str, existing: int, size: int) -> PutResult:
        if existing == size:
            self._refresh(digest)
            return PutResult(digest, size, stored=False)
        raise _corrupt(
            digest,
            f"the object in {self.url} holds {existing} bytes, not {size}; the S3 store never "
            "overwrites an object, so delete it to store the right bytes again",
        )

    def _refresh(self, digest: str) -> None:
        """Make a reused blob look fresh to garbage collection, which keeps blobs younger than
        its grace period (a registration reusing one has not committed yet): copy the object
        onto itself, which renews its LastModified. Skipped for objects renewed within
        REFRESH_AFTER, and for those beyond a single copy's 5GiB limit."""
        key = self.key_of(digest)
        with self._translated(f"refresh blob {digest}", digest):
            found = self._s3.head_object(Bucket=self.bucket, Key=key)
            age = time.time() - found["LastModified"].timestamp()
            if age < REFRESH_AFTER or found["ContentLength"] > MAX_COPY_SIZE:
                return
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
            )

    # -- garbage collection (the only callers) ------------------------------------------------
    def listing(self) -> list[tuple[str, int, float]]:
        """(digest, size, modification time) of every blob, for garbage collection."""
        out: list[tuple[str, int, float]] = []
        start = f"{self._base}sha256/"
        with self._translated("list the blobs"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    shard, _, name = item["Key"][len(start) :].partition("/")
                    if len(name) == 64 and name.startswith(shard) and _HEX.fullmatch(name):
                        modified = item["LastModified"].timestamp()
                        out.append((DIGEST_PREFIX + name, item["Size"], modified))
        return sorted(out)

    def delete(self, digest: str) -> bool:
        """Remove one blob (garbage collection is the only caller); False if it was gone."""
        if self._head(digest) is None:
            return False
        with self._translated(f"delete blob {digest}", digest):
            self._s3.delete_object(Bucket=self.bucket, Key=self.key_of(digest))
        return True

    # -- presigned transfers ------------------------------------------------------------------
    def presigned_get(self, digest: str, expires: int = 3600) -> PresignedRequest:
        """A GET of the blob's bytes that needs no credentials for *expires* seconds.

        Whoever downloads should still check the bytes against *digest*.
        """
        url = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key_of(digest)},
            ExpiresIn=_checked_expiry(expires),
        )
        return PresignedRequest("GET", url, {})

    def presigned_put(self, digest: str, expires: int = 3600) -> PresignedRequest:
        """A PUT of the blob's bytes that needs no credentials for *expires* seconds.

        The signed headers make S3 refuse bytes that do not hash to *digest* and refuse to
        replace an existing object (412), as ``put_bytes`` does; servers that ignore
        ``x-amz-checksum-sha256`` accept any bytes, so verify after the upload.
        """
        headers = {"If-None-Match": "*", "x-amz-checksum-sha256": _b64(digest)}
        url = self._s3.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.key_of(digest),
                "IfNoneMatch": "*",
                "ChecksumSHA256": headers["x-amz-checksum-sha256"],
            },
            ExpiresIn=_checked_expiry(expires),
        )
        return PresignedRequest("PUT", url, headers)

    # -- requests and their errors ------------------------------------------------------------
    def _head(self, digest: str) -> int | None:
        key = self.key_of(digest)
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if http_status(exc) != 404:
                raise self._error(exc, f"look up blob {digest}", digest) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"look up blob {digest}", digest) from None
        # A HEAD answers a missing bucket with the same bodiless 404 as a missing key.
        self._check_bucket()
        return None

    def _check_bucket(self) -> None:
        if self._bucket_seen:
            return
        with self._translated("open the bucket"):
            self._s3.head_bucket(Bucket=self.bucket)
        self._bucket_seen = True

    def _get(
        self, digest: str, offset: int = 0, etag: str = "", key: str | None = None
    ) -> GetObjectOutputTypeDef:
        """The object of blob *digest* (at *key*: its own key unless another is named)."""
        key = key or self.key_of(digest)
        try:
            if offset:
                return self._s3.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={offset}-", IfMatch=etag
                )
            return self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) == "NoSuchKey":
                raise _missing(digest) from None
            if error_code(exc) == "PreconditionFailed":
                raise _corrupt(digest, "the object was replaced while it was read") from None
            raise self._error(exc, f"read blob {digest}", digest) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"read blob {digest}", digest) from None

    @contextmanager
    def _translated(self, action: str, digest: str | None = None) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action, digest) from None

    def _error(
        self, exc: Exception, action: str, digest: str | None = None, note: str = ""
    ) -> StoreError:
        message = describe(
            exc,
            bucket=self.bucket,
            url=self.url,
            endpoint=self.endpoint,
            options=self.options,
            action=action,
        )
        return StoreError(message + note, bucket=self.bucket, endpoint=self.endpoint, digest=digest)


class _ObjectReader:
    """A GET body as a ``Readable``; a connection that breaks mid-body is resumed with a
    ranged GET from where it stopped (the caller's hash spans every piece)."""

    def __init__(self, store: S3BlobStore, digest: str, key: str | None = None) -> None:
        self.store = store
        self.digest = digest
        self.key = key  # another key than the blob's own (an upload's staged object)
        response = store._get(digest, key=key)
        self.body = response["Body"]
        self.size = response["ContentLength"]
        self.etag = response["ETag"]
        self.offset = 0
        self.resumes = 0

    def __enter__(self) -> _ObjectReader:
        return self

    def __exit__(self, *_: object) -> None:
        # An unread body would hold its pooled connection until garbage collection.
        self.body.close()

    def readinto(self, buffer: memoryview, /) -> int:
        while True:
            try:
                # botocore-stubs type the buffer as IO[bytes]; botocore takes any buffer
                n = self.body.readinto(buffer)  # type: ignore[arg-type]
            except _STREAM_ERRORS as exc:
                if self.offset >= self.size:
                    return 0  # every byte arrived; only the connection's end failed
                self._resume(exc)
                continue
            self.offset += n
            return n

    def _resume(self, exc: Exception) -> None:
        self.body.close()
        if self.resumes + 1 >= self.store.options.max_attempts:
            raise StoreError(
                f"the connection to {self.store.endpoint} broke while reading blob "
                f"{self.digest} at byte {self.offset} of {self.size} "
                f"({self.resumes + 1} attempts): {one_line(exc)}",
                digest=self.digest,
                bucket=self.store.bucket,
                endpoint=self.store.endpoint,
            )
        self.resumes += 1
        time.sleep(min(0.1 * 2**self.resumes, 2.0))
        response = self.store._get(self.digest, self.offset, self.etag, self.key)
        self.body = response["Body"]


class _Discard:
    """A sink for the hashing-only first read of a large file."""

    def begin(self, aligned: bool) -> None:
        pass

    def write(self, data: memoryview, /) -> None:
        pass

    def sync(self) -> None:
        pass


def _read_part(source: FileIO, part_size: int) -> bytes:
    pieces: list[bytes] = []
    wanted = part_size
    while wanted and (piece := source.read(wanted)):
        pieces.append(piece)
        wanted -= len(piece)
    # one read of a regular file usually returns the whole part: no copy then
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _part_size_for(size: int, part_size: int, path: Path) -> int:
    if size > MAX_OBJECT_SIZE:
        raise InvalidInput(f"{path} is larger than S3's 5TiB object limit", path=str(path))
    needed = -(-size // MAX_PARTS)
    return max(part_size, -(-needed // MiB) * MiB)


def _checked_expiry(expires: int) -> int:
    if not isinstance(expires, int) or not 1 <= expires <= 7 * 24 * 3600:
        raise InvalidInput("expires must be 1 to 604800 seconds (7 days)", field="expires")
    return expires


def _b64(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_of(digest))).decode()


def _missing(digest: str) -> NotFound:
    return NotFound(f"blob {digest} not found", digest=digest)


def _corrupt(digest: str, why: str) -> IntegrityError:
    return IntegrityError(f"blob {digest} is corrupt: {why}", digest=digest)
