"""The audit witness on S3: one object per checkpoint under a prefix, written once.

Objects are created with ``If-None-Match: *`` (servers that do not support conditional
writes get a look-up first), and, when the bucket has S3 Object Lock enabled, locked in
compliance mode for the retention window, so that nobody, the database's administrators
included, can rewrite or delete what the witness saw.
"""

from __future__ import annotations

import base64
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from . import checkpoints as cps
from .blobs.s3client import (
    S3Options,
    describe,
    error_code,
    http_status,
    new_client,
    parse_s3_url,
)
from .errors import StoreError
from .retention import DEFAULT_WINDOW_DAYS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .settings import Settings

# what servers answer to a conditional header they do not implement
_UNSUPPORTED = {"NotImplemented", "InvalidArgument", "InvalidRequest"}
LOCK_DAYS = DEFAULT_WINDOW_DAYS


def open_s3_witness(url: str, settings: Settings | None) -> S3Witness:
    from .settings import Settings

    bucket, prefix = parse_s3_url(url, "witness URL")
    options = S3Options.from_settings(settings or Settings.from_env())
    return S3Witness(bucket, prefix, options=options)


class S3Witness:
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
        self._locked: bool | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def _s3(self) -> S3Client:
        if self._client is None:
            self._client = new_client(self.options, max_connections=8)
        return self._client

    def key_of(self, tree_size: int) -> str:
        return self._base + cps.witness_name(tree_size)

    def write(self, cp: cps.Checkpoint) -> None:
        body = json.dumps(cp.to_json(), sort_keys=True).encode() + b"\n"
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key_of(cp.tree_size),
            "Body": body,
            "ContentType": "application/json",
            # S3 requires Content-MD5 with object lock parameters; both refuse torn bodies
            "ContentMD5": base64.b64encode(
                hashlib.md5(body, usedforsecurity=False).digest()
            ).decode(),
            "ChecksumSHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
        }
        try:
            if self._object_lock():
                args["ObjectLockMode"] = "COMPLIANCE"
                args["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=LOCK_DAYS)
            try:
                self._s3.put_object(**args, IfNoneMatch="*")
            except ClientError as exc:
                if error_code(exc) == "PreconditionFailed":
                    return  # already witnessed: left as it is
                if error_code(exc) not in _UNSUPPORTED:
                    raise
                # no conditional writes here: look first (a race may still overwrite, which
                # object lock or bucket versioning keep visible)
                if self._exists(args["Key"]):
                    return
                self._s3.put_object(**args)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"write checkpoint {cp.tree_size} to the witness") from None

    def read(self) -> list[cps.Checkpoint]:
        try:
            keys = self._keys()
            with ThreadPoolExecutor(8, thread_name_prefix="modelvault-witness") as pool:
                bodies = list(pool.map(self._get, keys))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "read the witness") from None
        out = []
        for key, body in zip(keys, bodies, strict=True):
            try:
                out.append(cps.Checkpoint.from_json(json.loads(body)))
            except ValueError as exc:
                name = key.rsplit("/", 1)[-1]
                raise ValueError(f"witness object {name} is unreadable: {exc}") from None
        return sorted(out, key=lambda c: c.tree_size)

    def _keys(self) -> list[str]:
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._base + "checkpoint-"):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(k for k in keys if k.endswith(".json"))

    def _get(self, key: str) -> bytes:
        return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if http_status(exc) == 404:
                return False
            raise
        return True

    def _object_lock(self) -> bool:
        """True if the bucket has S3 Object Lock enabled (asked once)."""
        if self._locked is None:
            try:
                found = self._s3.get_object_lock_configuration(Bucket=self.bucket)
                enabled = found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                self._locked = enabled == "Enabled"
            except ClientError as exc:
                # not configured, not supported, or not ours to read: write without a lock
                if error_code(exc) not in (
                    "ObjectLockConfigurationNotFoundError",
                    "NotImplemented",
                    "MethodNotAllowed",
                    "AccessDenied",
                ):
                    raise
                self._locked = False
        return self._locked

    def _error(self, exc: Exception, action: str) -> StoreError:
        endpoint = self._s3.meta.endpoint_url
        message = describe(
            exc,
            bucket=self.bucket,
            url=str(self),
            endpoint=endpoint,
            options=self.options,
            action=action,
        )
        return StoreError(message, bucket=self.bucket, endpoint=endpoint)
