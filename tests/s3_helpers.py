"""Helpers for the S3 blob store tests: settings for a store on the loopback S3 server, and a
raw boto3 client to look at or tamper with its bucket behind the store's back."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from modelvault import Settings
from modelvault.blobs import open_blob_store
from modelvault.blobs.s3 import S3BlobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"


@functools.cache
def raw_client(endpoint: str) -> S3Client:
    """A plain boto3 client: the tests' way to look at or tamper with the bucket directly.

    Cached, as a session costs 0.1 s to create; the fake credentials never change.
    """
    return boto3.session.Session(
        aws_access_key_id="modelvault-test", aws_secret_access_key="modelvault-test-secret"
    ).client("s3", endpoint_url=endpoint, region_name=REGION)


def s3_env(endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    """Environment for a registry or store on *bucket* under the prefix ``team/blobs``."""
    return {
        "MODELVAULT_BLOBS": f"s3://{bucket}/team/blobs",
        "MODELVAULT_S3_ENDPOINT_URL": endpoint,
        "MODELVAULT_S3_REGION": REGION,
        "MODELVAULT_S3_TIMEOUT": "5",
        "MODELVAULT_S3_MAX_ATTEMPTS": "3",
        **extra,
    }


def open_store(endpoint: str, bucket: str, home: Path, **extra: str) -> S3BlobStore:
    settings = Settings.from_env(env=s3_env(endpoint, bucket, **extra), home=home)
    store = open_blob_store(settings.blobs, settings)
    assert isinstance(store, S3BlobStore)
    return store


def object_keys(store: S3BlobStore, endpoint: str | None = None) -> list[str]:
    listing = raw_client(endpoint or store.endpoint).list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def open_uploads(store: S3BlobStore, endpoint: str | None = None) -> list[str]:
    listing = raw_client(endpoint or store.endpoint).list_multipart_uploads(Bucket=store.bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


def overwrite(store: S3BlobStore, digest: str, data: bytes) -> None:
    """Someone else writes *data* under the blob's key, bypassing the store."""
    raw_client(store.endpoint).put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=data)
