"""The S3 blob store against a real S3-protocol server on loopback: key layout, multipart
uploads around the threshold, write-once behaviour, errors, presigned URLs, a registry on S3.
The shared contract runs against it in tests/test_blobs.py."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelvault import Registry, Settings
from modelvault.blobs import open_blob_store
from modelvault.blobs.s3 import S3BlobStore
from modelvault.errors import IntegrityError, InvalidInput, NotFound, StoreError

from .s3_helpers import object_keys, open_store, open_uploads, overwrite, raw_client, s3_env

MiB = 1 << 20
HELLO_DIGEST = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def small_parts(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> S3BlobStore:
    """Multipart above 1 MiB, in parts of 5 MiB (the smallest S3 accepts)."""
    return open_store(
        moto_endpoint,
        s3_bucket,
        tmp_path / "home",
        MODELVAULT_S3_MULTIPART_THRESHOLD="1MiB",
        MODELVAULT_S3_PART_SIZE="5MiB",
    )


def test_layout_is_a_format(s3_store: S3BlobStore) -> None:
    s3_store.put_bytes(b"hello\n")
    key = "team/blobs/sha256/58/" + HELLO_DIGEST.removeprefix("sha256:")
    assert s3_store.key_of(HELLO_DIGEST) == key
    assert object_keys(s3_store) == [key]
    body = raw_client(s3_store.endpoint).get_object(Bucket=s3_store.bucket, Key=key)["Body"]
    assert body.read() == b"hello\n"
    assert open_uploads(s3_store) == []


def test_bucket_root_without_prefix(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    settings = Settings.from_env(
        env=s3_env(moto_endpoint, s3_bucket, MODELVAULT_BLOBS=f"s3://{s3_bucket}"), home=tmp_path
    )
    store = open_blob_store(settings.blobs, settings)
    assert isinstance(store, S3BlobStore)
    store.put_bytes(b"hello\n")
    assert object_keys(store) == ["sha256/58/" + HELLO_DIGEST.removeprefix("sha256:")]


@pytest.mark.parametrize(
    ("size", "parts"),
    [(MiB - 1, 0), (MiB, 0), (MiB + 1, 1), (10 * MiB, 2), (10 * MiB + 1, 3)],
)
def test_round_trip_around_the_multipart_threshold(
    small_parts: S3BlobStore, tmp_path: Path, size: int, parts: int
) -> None:
    data = os.urandom(size)
    sent: list[int] = []
    result = small_parts.put_file(_write(tmp_path / "in.bin", data), progress=sent.append)
    assert (result.digest, result.size, result.stored) == (digest_of(data), size, True)
    assert sum(sent) == size
    etag = raw_client(small_parts.endpoint).head_object(
        Bucket=small_parts.bucket, Key=small_parts.key_of(result.digest)
    )["ETag"]
    # A multipart object's ETag ends in "-<number of parts>"; a single PUT's does not.
    assert etag.strip('"').endswith(f"-{parts}") if parts else "-" not in etag
    assert small_parts.copy_to(result.digest, tmp_path / "out.bin") == size
    assert (tmp_path / "out.bin").read_bytes() == data
    assert small_parts.read_bytes(result.digest) == data
    assert small_parts.size(result.digest) == size
    assert open_uploads(small_parts) == []


def test_second_put_stores_nothing(small_parts: S3BlobStore, tmp_path: Path) -> None:
    big = os.urandom(3 * MiB)
    first = small_parts.put_file(_write(tmp_path / "a.bin", big))
    seen: list[int] = []
    again = small_parts.put_file(_write(tmp_path / "b.bin", big), progress=seen.append)
    small = small_parts.put_bytes(b"tiny")
    assert (first.stored, again.stored, small_parts.put_bytes(b"tiny").stored) == (
        True,
        False,
        False,
    )
    assert small.stored
    assert sum(seen) == len(big)
    assert len(object_keys(small_parts)) == 2
    assert open_uploads(small_parts) == []


def test_file_changing_during_a_multipart_upload(small_parts: S3BlobStore, tmp_path: Path) -> None:
    source = _write(tmp_path / "live.bin", os.urandom(11 * MiB))
    calls: list[int] = []

    def rewrite_after_first_part(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            with source.open("r+b") as f:
                f.seek(10 * MiB)
                f.write(b"changed")

    with pytest.raises(InvalidInput, match="file changed while it was being read"):
        small_parts.put_file(source, progress=rewrite_after_first_part)
    assert object_keys(small_parts) == []
    assert open_uploads(small_parts) == []


def test_wrong_bytes_under_a_final_key(s3_store: S3BlobStore, tmp_path: Path) -> None:
    """Someone else wrote wrong bytes of the right size: reads detect it, put trusts the size
    (as the local store does), and nothing ever overwrites the object."""
    data = b"the real weights"
    digest = digest_of(data)
    overwrite(s3_store, digest, b"forged weights!!")
    assert not s3_store.verify(digest)
    with pytest.raises(IntegrityError, match=digest):
        s3_store.read_bytes(digest)
    with pytest.raises(IntegrityError, match=digest):
        s3_store.copy_to(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not s3_store.put_bytes(data).stored
    assert s3_store.read_bytes(digest, verify=False) == b"forged weights!!"


def test_wrong_size_under_a_final_key_is_refused_not_overwritten(
    small_parts: S3BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(2 * MiB)
    digest = digest_of(data)
    overwrite(small_parts, digest, b"short")
    for put in (
        lambda: small_parts.put_bytes(data),
        lambda: small_parts.put_file(_write(tmp_path / "w.bin", data)),
    ):
        with pytest.raises(IntegrityError, match=rf"{digest} is corrupt.*never overwrites"):
            put()
    assert small_parts.read_bytes(digest, verify=False) == b"short"
    assert open_uploads(small_parts) == []


def test_missing_blob_in_an_existing_bucket(s3_store: S3BlobStore) -> None:
    missing = digest_of(b"absent")
    assert not s3_store.exists(missing)
    with pytest.raises(NotFound, match=missing):
        s3_store.size(missing)
    with pytest.raises(NotFound, match=missing):
        s3_store.read_bytes(missing)


@pytest.mark.usefixtures("aws_env")
def test_missing_bucket_is_one_clear_store_error(moto_endpoint: str, tmp_path: Path) -> None:
    store = open_store(moto_endpoint, "mv-no-such-bucket", tmp_path)
    calls = [
        lambda: store.exists(HELLO_DIGEST),
        lambda: store.put_bytes(b"hello\n"),
        lambda: store.read_bytes(HELLO_DIGEST),
    ]
    for call in calls:
        with pytest.raises(StoreError) as caught:
            call()
        message = caught.value.message
        assert message == f"S3 bucket 'mv-no-such-bucket' does not exist at {moto_endpoint}"
        assert caught.value.fields["bucket"] == "mv-no-such-bucket"


@pytest.mark.usefixtures("aws_env")
def test_unreachable_endpoint(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    store = open_store(endpoint, "mv-bucket", tmp_path, MODELVAULT_S3_MAX_ATTEMPTS="1")
    with pytest.raises(StoreError) as caught:
        store.put_bytes(b"x")
    assert caught.value.message == (
        f"cannot reach the S3 endpoint {endpoint} for s3://mv-bucket/team/blobs (after 1 attempts)"
    )


def test_missing_credentials(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(moto_endpoint, s3_bucket, tmp_path)
    with pytest.raises(StoreError, match=r"^no usable AWS credentials for s3://mv-") as caught:
        store.exists(HELLO_DIGEST)
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"MODELVAULT_S3_PART_SIZE": "1MiB"}, "MODELVAULT_S3_PART_SIZE must be between 5MiB"),
        ({"MODELVAULT_S3_MULTIPART_THRESHOLD": "big"}, "MODELVAULT_S3_MULTIPART_THRESHOLD must"),
        ({"MODELVAULT_S3_TIMEOUT": "-1"}, "MODELVAULT_S3_TIMEOUT must be a positive number"),
        ({"MODELVAULT_S3_MAX_ATTEMPTS": "0"}, "MODELVAULT_S3_MAX_ATTEMPTS must be a positive"),
        ({"MODELVAULT_BLOBS": "s3://Bad_Bucket/x"}, "does not name a valid bucket"),
        ({"MODELVAULT_BLOBS": "s3://bucket:9000/x"}, "must look like s3://bucket/prefix"),
    ],
)
def test_bad_settings_are_invalid_input(extra: dict[str, str], problem: str) -> None:
    settings = Settings.from_env(env=s3_env("http://127.0.0.1:9", "mv-bucket", **extra))
    with pytest.raises(InvalidInput, match=problem):
        open_blob_store(settings.blobs, settings)


def test_settings_sizes_and_defaults(tmp_path: Path) -> None:
    store = open_store("http://127.0.0.1:9", "mv-bucket", tmp_path, MODELVAULT_S3_PART_SIZE="1GiB")
    assert store.options.part_size == 1 << 30
    assert store.options.multipart_threshold == 64 * MiB
    assert store.options.max_attempts == 3
    assert store.endpoint == "http://127.0.0.1:9"


def test_importing_modelvault_does_not_import_boto3() -> None:
    code = (
        "import sys, modelvault, modelvault.blobs;"
        "modelvault.blobs.open_blob_store('memory://');"
        "assert not [m for m in sys.modules if m.startswith(('boto3', 'botocore'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_presigned_get_and_put(s3_store: S3BlobStore) -> None:
    data = b"uploaded without credentials"
    digest = digest_of(data)
    put = s3_store.presigned_put(digest, expires=60)
    assert put.method == "PUT"
    headers = {**put.headers, "Content-Type": "application/octet-stream"}
    request = urllib.request.Request(put.url, data=data, method="PUT", headers=headers)
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert s3_store.verify(digest)
    again = urllib.request.Request(put.url, data=b"other", method="PUT", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(again)
    assert refused.value.code == 412
    refused.value.close()
    get = s3_store.presigned_get(digest, expires=60)
    with urllib.request.urlopen(get.url) as response:
        assert response.read() == data
    with pytest.raises(InvalidInput, match="expires"):
        s3_store.presigned_get(digest, expires=0)


def test_registry_on_s3_registers_and_pulls_verified(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path, model_dir: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env(
        env=s3_env(moto_endpoint, s3_bucket, MODELVAULT_S3_MULTIPART_THRESHOLD="1KiB"),
        home=home,
        actor="alice",
    )
    (model_dir / "weights.bin").write_bytes(os.urandom(3 * MiB))
    weights = (model_dir / "weights.bin").read_bytes()
    store = open_store(moto_endpoint, s3_bucket, home)
    with Registry(settings=settings) as reg:
        version = reg.register("fraud", model_dir, capture_code=False, capture_environment=False)
        pulled = reg.pull("fraud:1", tmp_path / "pulled")
        assert version.number == 1
        assert pulled.files == ("sub/config.json", "weights.bin")
        for name in pulled.files:
            assert (tmp_path / "pulled" / name).read_bytes() == (model_dir / name).read_bytes()
        keys = object_keys(store)
        # the large file; the small config file and the manifest are kept with the version
        assert len(keys) == 1
        assert all(k.startswith("team/blobs/sha256/") for k in keys)
        assert not (home / "blobs").exists()

        overwrite(store, digest_of(weights), bytes(len(weights)))
        with pytest.raises(IntegrityError, match=r"weights\.bin does not match its digest"):
            reg.pull("fraud:1", tmp_path / "again")
        assert not (tmp_path / "again" / "weights.bin").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
