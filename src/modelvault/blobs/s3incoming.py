"""Presigned uploads to S3 that tell the uploader nothing about the bucket: each URL puts the
bytes under a staging key of its own, ``PREFIX/incoming/<64 hex>``, and completing the
upload hashes them and stores them under the blob's key, write-once like every store write.

A PUT straight to the blob's key would answer 412 when the blob exists, telling anyone who
may upload that some project holds a file. The staging key is derived from the user, the
digest and a random id, so nothing is remembered between the two requests (any replica
completes what another one signed) and another user's id names an object that does not
exist, like an id never given out. Staged objects never completed are swept after a day.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..errors import IntegrityError, NotFound
from .base import PutResult, checked_digest
from .copying import BufferSink, SizeChanged, copy_stream
from .s3 import (
    MAX_PARTS,
    PART_CONCURRENCY,
    PresignedRequest,
    _b64,
    _checked_expiry,
    _ObjectReader,
)
from .s3client import MiB, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from .s3 import S3BlobStore

INCOMING = "incoming/"
STAGED_AGE = 86_400.0  # seconds a staged object may wait for its completion
COPY_PART = 512 * MiB
_ID = re.compile(r"[0-9a-f]{32}")


def staged_key(store: S3BlobStore, user: str, digest: str, upload_id: str) -> str:
    name = hashlib.sha256(f"{user}\x00{digest}\x00{upload_id}".encode()).hexdigest()
    return f"{store._base}{INCOMING}{name}"


def presign(
    store: S3BlobStore, user: str, digest: str, expires: int = 900
) -> tuple[str, PresignedRequest]:
    """A new upload id, and a PUT of *digest*'s bytes to its staging key that needs no
    credentials for *expires* seconds. The signed checksum header makes S3 refuse other
    bytes; the staging key never holds anything else, so the answer to the PUT is the same
    whatever the bucket holds."""
    upload_id = secrets.token_hex(16)
    headers = {"x-amz-checksum-sha256": _b64(checked_digest(digest))}
    url = store._s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": store.bucket,
            "Key": staged_key(store, user, digest, upload_id),
            "ChecksumSHA256": headers["x-amz-checksum-sha256"],
        },
        ExpiresIn=_checked_expiry(expires),
    )
    return upload_id, PresignedRequest("PUT", url, headers)


def complete(store: S3BlobStore, user: str, digest: str, upload_id: str) -> PutResult | None:
    """Store the bytes *user* put for upload *upload_id* as blob *digest* if they hash to it
    (an existing blob is kept as it is), and delete the staged object either way. None when
    there is no staged object (never put, completed already, swept, or another user's id).

    The bytes are hashed here, whatever checksum the store reports: an S3-compatible server
    may keep a client's ``x-amz-checksum-sha256`` without checking it (moto does).
    """
    checked_digest(digest)
    if not _ID.fullmatch(upload_id):
        return None
    key = staged_key(store, user, digest, upload_id)
    action = f"complete the presigned upload of blob {digest}"
    with store._translated(action, digest):
        try:  # read as blobs are (a broken connection resumes where it stopped), hashed
            reader = _ObjectReader(store, digest, key)
        except NotFound:
            return None
        with reader:
            kept = BufferSink() if reader.size <= store.options.multipart_threshold else None
            try:
                copied = copy_stream(reader, kept, expected_size=reader.size)
            except SizeChanged:
                raise IntegrityError(
                    f"the uploaded object of blob {digest} changed while it was checked; "
                    "nothing stored",
                    digest=digest,
                ) from None
        size, etag, actual = reader.size, reader.etag, copied.digest
        if actual != digest:
            store._s3.delete_object(Bucket=store.bucket, Key=key)
            raise IntegrityError(
                f"uploaded bytes hash to {actual}, not {digest}; nothing stored", digest=digest
            )
        # small: store the very bytes just hashed; large: a copy inside S3, of the object
        # as it was hashed (its ETag), in parts
        put = (
            store._put_object(digest, bytes(kept.data))
            if kept is not None
            else _copy(store, key, etag, digest, size)
        )
        store._s3.delete_object(Bucket=store.bucket, Key=key)
    return put


def _copy(store: S3BlobStore, source: str, etag: str, digest: str, size: int) -> PutResult:
    existing = store._head(digest)
    if existing is not None:
        return store._already_stored(digest, existing, size)
    key = store.key_of(digest)
    part = max(COPY_PART, -(-size // MAX_PARTS))
    ranges = [(start, min(start + part, size) - 1) for start in range(0, size, part)]

    def copy_part(number: int) -> CompletedPartTypeDef:
        first, last = ranges[number - 1]
        try:
            answer = store._s3.upload_part_copy(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": store.bucket, "Key": source},
                CopySourceIfMatch=etag,
                CopySourceRange=f"bytes={first}-{last}",
            )
        except ClientError as exc:
            if error_code(exc) != "PreconditionFailed":
                raise
            raise IntegrityError(
                f"the uploaded object of blob {digest} changed while it was checked; "
                "nothing stored",
                digest=digest,
            ) from None
        return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

    upload_id = store._s3.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
    try:
        with ThreadPoolExecutor(PART_CONCURRENCY, thread_name_prefix="modelvault-s3-copy") as pool:
            parts = list(pool.map(copy_part, range(1, len(ranges) + 1)))
        store._complete_once(key, upload_id, parts)
    except ClientError as exc:
        store._abort(key, upload_id)
        if error_code(exc) != "PreconditionFailed":
            raise
        return store._already_stored(digest, store.size(digest), size)  # stored meanwhile
    except BaseException:
        store._abort(key, upload_id)
        raise
    return PutResult(digest, size, stored=True)


def sweep(store: S3BlobStore, max_age: float | None = None, now: float | None = None) -> int:
    """Delete the staged objects older than *max_age* seconds (STAGED_AGE by default): their
    uploads were never completed. The server does this when it starts. How many went."""
    prefix = f"{store._base}{INCOMING}"
    age = STAGED_AGE if max_age is None else max_age
    cutoff = (time.time() if now is None else now) - age
    removed = 0
    with store._translated("sweep the staged uploads"):
        paginator = store._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["LastModified"].timestamp() < cutoff:
                    store._s3.delete_object(Bucket=store.bucket, Key=item["Key"])
                    removed += 1
    return removed
