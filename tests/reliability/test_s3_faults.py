"""Faults between the S3 blob store and its server, injected by a proxy on loopback: 5xx
answers, slow answers, refusals, a connection cut mid-body, a lost race. Each is retried or
fails with one clear StoreError, and never leaves a wrong object, an open upload or a short
file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvault import Registry, Settings, StoreError
from modelvault.blobs.s3 import S3BlobStore

from ..s3_helpers import object_keys, open_store, open_uploads, raw_client, s3_env
from .faultproxy import FaultProxy, Match, method_is, part_upload

MiB = 1 << 20
FAST = {
    "MODELVAULT_S3_TIMEOUT": "1",
    "MODELVAULT_S3_MAX_ATTEMPTS": "3",
    "MODELVAULT_S3_MULTIPART_THRESHOLD": "1MiB",
    "MODELVAULT_S3_PART_SIZE": "5MiB",
}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def object_head(method: str, path: str) -> bool:
    return method == "HEAD" and "/sha256/" in path


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as running:
        yield running


def through(proxy: FaultProxy, bucket: str, tmp_path: Path, **extra: str) -> S3BlobStore:
    return open_store(proxy.url, bucket, tmp_path / "home", **{**FAST, **extra})


def count(proxy: FaultProxy, match: Match) -> int:
    return sum(1 for method, path in proxy.seen if match(method, path))


def assert_nothing_stored(store: S3BlobStore, moto_endpoint: str) -> None:
    assert object_keys(store, moto_endpoint) == []
    assert open_uploads(store, moto_endpoint) == []


def assert_one_line(error: StoreError, *fragments: str) -> None:
    assert "\n" not in error.message
    assert "Traceback" not in error.message
    for fragment in fragments:
        assert fragment in error.message


# --- 5xx ---------------------------------------------------------------------------------


def test_transient_5xx_on_a_put_are_retried(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(proxy, s3_bucket, tmp_path)
    proxy.fail(500, method_is("PUT"), times=1)
    proxy.fail(503, method_is("PUT"), times=1)
    result = store.put_bytes(b"weights")
    assert result.stored
    assert count(proxy, method_is("PUT")) == 3
    assert store.read_bytes(result.digest) == b"weights"


def test_transient_500_on_a_part_is_retried(
    proxy: FaultProxy, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(proxy, s3_bucket, tmp_path)
    data = os.urandom(6 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    proxy.fail(500, part_upload, times=1)
    assert store.put_file(tmp_path / "big.bin").stored
    assert count(proxy, part_upload) == 3  # two parts, one of them twice
    assert store.read_bytes(digest_of(data)) == data
    assert open_uploads(store, moto_endpoint) == []


def test_persistent_500_on_parts_fails_and_aborts_the_upload(
    proxy: FaultProxy, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(proxy, s3_bucket, tmp_path, MODELVAULT_S3_MAX_ATTEMPTS="2")
    (tmp_path / "big.bin").write_bytes(os.urandom(6 * MiB))
    proxy.fail(500, part_upload)
    with pytest.raises(StoreError) as caught:
        store.put_file(tmp_path / "big.bin")
    assert_one_line(
        caught.value, f"at {proxy.url}: HTTP 500 InternalError after 2 attempts", "store blob"
    )
    assert count(proxy, method_is("DELETE")) == 1  # the abort
    assert_nothing_stored(store, moto_endpoint)


def test_persistent_503_fails_a_registration_that_leaves_nothing(
    proxy: FaultProxy, moto_endpoint: str, s3_bucket: str, tmp_path: Path, model_dir: Path
) -> None:
    env = s3_env(proxy.url, s3_bucket, **{**FAST, "MODELVAULT_S3_MAX_ATTEMPTS": "2"})
    env["MODELVAULT_INLINE_BLOB_MAX"] = "0"  # the small files are objects too, PUT each
    settings = Settings.from_env(env=env, home=tmp_path / "home", actor="alice")
    proxy.fail(503, method_is("PUT"))
    with Registry(settings=settings) as reg:
        with pytest.raises(StoreError) as caught:
            reg.register("m", model_dir, capture_code=False, capture_environment=False)
        assert_one_line(caught.value, "HTTP 503 SlowDown after 2 attempts", s3_bucket)
        assert reg.models() == []
        assert object_keys(open_store(moto_endpoint, s3_bucket, tmp_path)) == []
        proxy.clear()
        assert reg.register("m", model_dir, capture_code=False, capture_environment=False).number
    assert len(object_keys(open_store(moto_endpoint, s3_bucket, tmp_path))) == 3


def test_access_denied_is_one_clear_error(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(proxy, s3_bucket, tmp_path)
    proxy.fail(403)
    for call in (lambda: store.put_bytes(b"x"), lambda: store.read_bytes(digest_of(b"x"))):
        with pytest.raises(StoreError) as caught:
            call()
        assert_one_line(caught.value, f"access denied to s3://{s3_bucket}/team/blobs")
    assert count(proxy, method_is("HEAD")) == 1  # a refusal is not retried


# --- slow answers ------------------------------------------------------------------------


def test_a_slow_answer_is_retried(proxy: FaultProxy, s3_bucket: str, tmp_path: Path) -> None:
    store = through(proxy, s3_bucket, tmp_path, MODELVAULT_S3_TIMEOUT="0.5")
    digest = store.put_bytes(b"weights").digest
    proxy.delay(1.5, method_is("GET"), times=1)
    assert store.read_bytes(digest) == b"weights"
    assert count(proxy, method_is("GET")) == 2


def test_answers_slower_than_the_timeout_fail_clearly(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(
        proxy, s3_bucket, tmp_path, MODELVAULT_S3_TIMEOUT="0.3", MODELVAULT_S3_MAX_ATTEMPTS="2"
    )
    proxy.delay(1.0, method_is("HEAD"))
    with pytest.raises(StoreError) as caught:
        store.exists(digest_of(b"x"))
    assert_one_line(
        caught.value, f"the S3 endpoint {proxy.url} did not answer within 0.3s", "2 attempts"
    )


# --- connection cut mid-download ---------------------------------------------------------


def test_a_cut_download_resumes_and_verifies(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(proxy, s3_bucket, tmp_path)
    data = os.urandom(3 * MiB)
    digest = store.put_bytes(data).digest
    proxy.cut(method_is("GET"), times=1)
    assert store.copy_to(digest, tmp_path / "out.bin") == len(data)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert count(proxy, method_is("GET")) == 2


def test_a_download_cut_every_time_fails_without_a_short_file(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    store = through(proxy, s3_bucket, tmp_path)
    data = os.urandom(3 * MiB)
    digest = store.put_bytes(data).digest
    proxy.cut(method_is("GET"))
    dest = tmp_path / "pulled"
    dest.mkdir()
    for call in (
        lambda: store.copy_to(digest, dest / "model.bin"),
        lambda: store.read_bytes(digest),
        lambda: store.verify(digest),
    ):
        with pytest.raises(StoreError) as caught:
            call()
        assert_one_line(caught.value, f"broke while reading blob {digest} at byte", "3 attempts")
    assert list(dest.iterdir()) == []


# --- write-once when the existence check loses a race ------------------------------------


@pytest.mark.parametrize("size", [1000, 6 * MiB])
@pytest.mark.parametrize("theirs", ["same", "forged"])
def test_a_put_that_lost_the_race_never_overwrites(
    proxy: FaultProxy,
    moto_endpoint: str,
    s3_bucket: str,
    tmp_path: Path,
    size: int,
    theirs: str,
) -> None:
    """Another writer stores the key between our HEAD and our PUT (simulated by the proxy
    answering the HEAD with 404): the conditional write is refused and nothing changes."""
    store = through(proxy, s3_bucket, tmp_path)
    data = os.urandom(size)
    digest = digest_of(data)
    other = data if theirs == "same" else bytes(size)
    raw = raw_client(moto_endpoint)
    raw.put_object(Bucket=s3_bucket, Key=store.key_of(digest), Body=other)
    before = raw.head_object(Bucket=s3_bucket, Key=store.key_of(digest))["ETag"]
    proxy.fail(404, object_head)
    (tmp_path / "m.bin").write_bytes(data)
    assert not store.put_file(tmp_path / "m.bin").stored
    assert raw.head_object(Bucket=s3_bucket, Key=store.key_of(digest))["ETag"] == before
    assert open_uploads(store, moto_endpoint) == []
    proxy.clear()
    assert store.verify(digest) == (theirs == "same")
