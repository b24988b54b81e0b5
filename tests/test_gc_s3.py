"""Garbage collection with the blobs on S3 (a real S3-protocol server on loopback): gc lists
and deletes objects like files, keeps young ones, and a reused blob counts as fresh."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from modelvault import NotFound, Registry, Settings
from modelvault.blobs import s3 as s3_module

from .conftest import FakeClock, write_model
from .s3_helpers import REGION, raw_client


@pytest.fixture
def s3reg(
    settings: Settings, clock: FakeClock, moto_endpoint: str, s3_bucket: str
) -> Iterator[Registry]:
    reg = Registry(
        settings=replace(
            settings,
            blobs=f"s3://{s3_bucket}/team/blobs",
            s3_endpoint_url=moto_endpoint,
            s3_region=REGION,
            s3_timeout="5",
            s3_max_attempts="2",
            inline_blob_max="0",  # every blob an object, which the tests list
        ),
        clock=clock,
    )
    yield reg
    reg.close()


def _keys(endpoint: str, bucket: str) -> set[str]:
    listing = raw_client(endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"] for o in listing}


def test_gc_on_s3_frees_exactly_the_unreferenced_objects(
    s3reg: Registry, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    reg = s3reg
    for n in (1, 2, 3):
        reg.register(
            "m",
            write_model(tmp_path, f"v{n}", b"bytes %d" % n),
            capture_environment=False,
            capture_code=False,
        )
    garbage = set()
    for n in (1, 2):
        garbage.add(reg.get(f"m:{n}").artifact_digest)
        garbage.update(f.digest for f in reg.manifest(f"m:{n}").files)
    reg.prune("m", keep_last=1, reason="tidy")
    store = reg._ctx.blobs
    assert {d for d, _, _ in store.listing()} >= garbage  # type: ignore[attr-defined]
    before = _keys(moto_endpoint, s3_bucket)
    # everything was written just now: within the grace period nothing goes
    young = reg.gc(dry_run=True)
    assert young["blobs"] == 0 and young["kept_young"] == len(garbage)
    dry = reg.gc(dry_run=True, grace_seconds=0)
    assert dry["blobs"] == len(garbage) and _keys(moto_endpoint, s3_bucket) == before
    done = reg.gc(grace_seconds=0)
    assert done["blobs"] == len(garbage)
    assert done["per_model"] == {"default/m": {"blobs": 4, "bytes": dry["bytes"]}}
    gone = {store.key_of(d) for d in garbage}  # type: ignore[attr-defined]
    assert _keys(moto_endpoint, s3_bucket) == before - gone
    reg.pull("m:3", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"bytes 3"
    with pytest.raises(NotFound, match="was deleted"):
        reg.pull("m:1", tmp_path / "gone")
    assert reg.gc(grace_seconds=0)["blobs"] == 0
    assert reg.verify_audit().ok


def test_a_reused_blob_on_s3_counts_as_fresh(
    s3reg: Registry, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3reg._ctx.blobs
    digest = store.put_bytes(b"shared weights").digest
    key = store.key_of(digest)  # type: ignore[attr-defined]
    first = raw_client(moto_endpoint).head_object(Bucket=s3_bucket, Key=key)["LastModified"]
    time.sleep(1.1)  # S3 times have a resolution of one second
    assert store.put_bytes(b"shared weights").stored is False  # renewed recently: left alone
    same = raw_client(moto_endpoint).head_object(Bucket=s3_bucket, Key=key)["LastModified"]
    assert same == first
    monkeypatch.setattr(s3_module, "REFRESH_AFTER", 0.0)
    assert store.put_bytes(b"shared weights").stored is False
    later = raw_client(moto_endpoint).head_object(Bucket=s3_bucket, Key=key)["LastModified"]
    assert later > first
    assert store.read_bytes(digest) == b"shared weights"
