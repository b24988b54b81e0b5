"""Fixtures for the S3 blob store tests: a real S3-protocol server (moto) on loopback, one
per test process, a fresh bucket per test, fake credentials in the environment. conftest.py
imports them, so every test module can use them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvault.blobs.s3 import S3BlobStore

from .s3_helpers import open_store, raw_client

_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_CA_BUNDLE",
)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, and nothing from the developer's own AWS set-up."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "modelvault-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "modelvault-test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(moto_endpoint: str, aws_env: None) -> str:
    name = f"mv-{uuid.uuid4().hex[:24]}"
    raw_client(moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> S3BlobStore:
    """The contract suite's S3 store: files over 100 KiB take the multipart path."""
    return open_store(
        moto_endpoint, s3_bucket, tmp_path / "home", MODELVAULT_S3_MULTIPART_THRESHOLD="100KiB"
    )
