"""How the S3 blob store talks to its server: options read from settings, the botocore
client (retries, timeouts) and the one-line ``StoreError`` for any botocore failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .._version import __version__
from ..errors import InvalidInput, StoreError
from ..sizes import parse_size

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from ..settings import Settings

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3 refuses smaller parts, except the last
MAX_PART_SIZE = 5 << 30
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach the bucket and how to move bytes; see docs/configuration.md."""

    endpoint_url: str | None = None
    region: str | None = None
    multipart_threshold: int = 64 * MiB
    part_size: int = 16 * MiB
    timeout: float = 60.0
    max_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Options:
        part_size = parse_size(settings.s3_part_size, "MODELVAULT_S3_PART_SIZE")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise InvalidInput(
                f"MODELVAULT_S3_PART_SIZE must be between 5MiB and 5GiB (S3's limits), "
                f"got {settings.s3_part_size!r}",
                field="s3_part_size",
            )
        attempts = _number(settings.s3_max_attempts, "MODELVAULT_S3_MAX_ATTEMPTS", int, 100)
        return cls(
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            multipart_threshold=parse_size(
                settings.s3_multipart_threshold, "MODELVAULT_S3_MULTIPART_THRESHOLD"
            ),
            part_size=part_size,
            timeout=_number(settings.s3_timeout, "MODELVAULT_S3_TIMEOUT", float, 3600),
            max_attempts=int(attempts),
        )


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_s3_url(url: str, what: str, **fields: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; *what* names the URL in the error, which
    carries *fields*."""
    parts = urlsplit(url)
    if parts.username or parts.password or parts.port or parts.query or parts.fragment:
        raise InvalidInput(f"{what} {url!r} must look like s3://bucket/prefix", **fields)
    if not _BUCKET.fullmatch(parts.netloc):
        raise InvalidInput(f"{what} {url!r} does not name a valid bucket", **fields)
    return parts.netloc, unquote(parts.path)


def new_client(options: S3Options, max_connections: int) -> S3Client:
    try:
        import boto3
    except ModuleNotFoundError:
        raise StoreError("the s3 blob store needs boto3: pip install 'modelvault[s3]'") from None
    from botocore.config import Config

    config = Config(
        region_name=options.region,
        signature_version="s3v4",
        connect_timeout=options.timeout,
        read_timeout=options.timeout,
        # "standard" retries 5xx, throttling and connection errors with jittered backoff;
        # total_max_attempts counts the first try, unlike "max_attempts".
        retries={"mode": "standard", "total_max_attempts": options.max_attempts},
        max_pool_connections=max_connections,
        # Integrity is our own SHA-256, end to end; botocore's default CRC trailers break
        # several S3-compatible servers, so checksums go only where S3 requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra=f"modelvault/{__version__}",
    )
    # A session per store: boto3's default session is shared and not thread-safe.
    session = boto3.session.Session(region_name=options.region)
    return session.client("s3", endpoint_url=options.endpoint_url, config=config)


def describe(
    exc: Exception, *, bucket: str, url: str, endpoint: str, options: S3Options, action: str
) -> str:
    """One line saying what failed where, for any botocore error."""
    where = f"{url} at {endpoint}"
    attempts = f"after {options.max_attempts} attempts"
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        if code == "NoSuchBucket" or (status == 404 and action == "open the bucket"):
            return f"S3 bucket {bucket!r} does not exist at {endpoint}"
        if code in _DENIED or status == 403:
            return (
                f"access denied to {where} ({code or status}) when trying to {action}: "
                "check the credentials and the bucket policy"
            )
        if status is not None and status >= 500:
            return f"cannot {action} in {where}: HTTP {status} {code} {attempts}"
        detail = exc.response.get("Error", {}).get("Message", "")
        return f"cannot {action} in {where}: {code or status} {detail}".rstrip()
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            f"no usable AWS credentials for {url}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return f"cannot reach the S3 endpoint {endpoint} for {url} ({attempts})"
    if isinstance(exc, ReadTimeoutError):
        return (
            f"the S3 endpoint {endpoint} did not answer within {options.timeout:g}s "
            f"when trying to {action} ({attempts})"
        )
    return f"cannot {action} in {where}: {one_line(exc)}"


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def http_status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _number(text: str, env: str, kind: type[float] | type[int], most: int) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not 0 < value <= most:
        raise InvalidInput(f"{env} must be a positive number up to {most}, got {text!r}", field=env)
    return value
