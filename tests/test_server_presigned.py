"""Presigned S3 uploads through the server: the bytes go to a staging key of the request's
own, and only completing the upload (which hashes them) stores the blob and lets the
uploader name it. Nothing in the answers, nor in S3's, depends on whether another project
holds the same blob."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from modelvault import Settings
from modelvault.blobs import s3incoming
from modelvault.blobs.s3 import S3BlobStore
from modelvault.domain import FileEntry
from modelvault.manifest import manifest_bytes
from modelvault.server import routes_blobs
from modelvault.service import identity

from .conftest import write_model
from .s3_helpers import object_keys, open_store, raw_client, s3_env
from .server_fixtures import LiveServer, live_server

THEIRS = b"bank-b's weights, 0001"  # the same length as MINE: answers compare exactly
MINE = b"bank-a's weights, 0002"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def s3_server(
    home: Path, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> Iterator[LiveServer]:
    """A server on S3 with projects bank-a and bank-b; bank-b holds the blob THEIRS."""
    env = {"MODELVAULT_DB": f"sqlite:///{home}/r.db", **s3_env(moto_endpoint, s3_bucket)}
    env["MODELVAULT_INLINE_BLOB_MAX"] = "0"  # every blob an object of the bucket, THEIRS too
    with live_server(Settings.from_env(env=env, home=home)) as server:
        admin = server.client("alice")
        admin.register("m", write_model(tmp_path, "a", b"a weights"), project="bank-a")
        admin.register("m", write_model(tmp_path, "b", THEIRS), project="bank-b")
        yield server


def _store(server: LiveServer) -> S3BlobStore:
    blobs = server.registry._ctx.blobs.inner  # type: ignore[attr-defined]
    assert isinstance(blobs, S3BlobStore)
    return blobs


def _tenant(server: LiveServer, user: str = "ann") -> str:
    """A token of *user*, admin of project bank-a only."""
    ctx = server.registry._ctx
    identity.create_user(ctx, user)
    identity.grant(ctx, "bank-a", user, "admin")
    return identity.create_token(ctx, user, project="bank-a")[0]


def _name(c: httpx.Client, digest: str, size: int) -> httpx.Response:
    """Register a version of ann's own whose one file is the blob *digest*."""
    claim = manifest_bytes([FileEntry("w.bin", size, digest, 0o644)]).decode()
    return c.post("/projects/bank-a/models/named/versions", json={"manifest_text": claim})


def _url(c: httpx.Client, digest: str) -> dict[str, Any]:
    answer = c.get(f"/blobs/{digest}/url", params={"method": "PUT"})
    assert answer.status_code == 200, answer.text
    signed: dict[str, Any] = answer.json()
    return signed


def _put(signed: dict[str, Any], data: bytes, **extra: str) -> int:
    return httpx.put(
        signed["url"], content=data, headers={**signed["headers"], **extra}
    ).status_code


def _complete(c: httpx.Client, signed: dict[str, Any]) -> httpx.Response:
    return c.post(signed["complete"].removeprefix("/api/v1"))


def test_a_presigned_upload_is_stored_and_named_only_once_completed(s3_server: LiveServer) -> None:
    store = _store(s3_server)
    with s3_server.api(_tenant(s3_server)) as c:
        signed = _url(c, sha(MINE))
        assert set(signed) == {"method", "url", "headers", "complete"}
        assert signed["method"] == "PUT"
        assert signed["complete"].startswith(f"/api/v1/blobs/{sha(MINE)}/presigned/")
        assert _put(signed, MINE) == 200
        assert not store.exists(sha(MINE))  # staged only: not a blob yet
        staged = [k for k in object_keys(store) if "/incoming/" in k]
        assert len(staged) == 1 and staged[0].startswith("team/blobs/incoming/")
        assert _name(c, sha(MINE), len(MINE)).status_code == 404  # not shown to the server yet
        done = _complete(c, signed)
        assert done.status_code == 201, done.text
        assert done.json() == {"digest": sha(MINE), "size": len(MINE), "stored": True}
        assert store.read_bytes(sha(MINE)) == MINE
        assert not [k for k in object_keys(store) if "/incoming/" in k]  # staged object gone
        assert _name(c, sha(MINE), len(MINE)).status_code == 201
        assert c.get(f"/blobs/{sha(MINE)}").content == MINE


def test_a_presigned_upload_tells_nothing_about_other_projects_blobs(s3_server: LiveServer) -> None:
    store = _store(s3_server)
    with s3_server.api(_tenant(s3_server)) as c:
        assert store.exists(sha(THEIRS)) and not store.exists(sha(MINE))
        before = {k: v for k, v in _keys_with_etags(store).items() if "/incoming/" not in k}
        urls = [_url(c, sha(data)) for data in (THEIRS, MINE)]
        # same shape: the same fields, headers and kind of key, whatever the bucket holds
        assert set(urls[0]) == set(urls[1])
        assert set(urls[0]["headers"]) == set(urls[1]["headers"]) == {"x-amz-checksum-sha256"}
        paths = [urlsplit(u["url"]).path for u in urls]
        assert [p.rsplit("/", 1)[0] for p in paths] == [p.rsplit("/", 1)[0] for p in paths[::-1]]
        assert "/incoming/" in paths[0]
        refused = [_name(c, sha(data), len(data)) for data in (THEIRS, MINE)]
        assert [r.status_code for r in refused] == [404, 404]  # bank-b's blob is not ann's
        assert [_put(u, data) for u, data in zip(urls, (THEIRS, MINE), strict=True)] == [200, 200]
        answers = [_complete(c, u) for u in urls]
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[0].json() == {**answers[1].json(), "digest": sha(THEIRS)}
        # completing with the right bytes is what lets ann name bank-b's blob
        assert _name(c, sha(THEIRS), len(THEIRS)).status_code == 201
    after = _keys_with_etags(store)
    assert all(after[k] == etag for k, etag in before.items())  # bank-b's object untouched
    assert store.read_bytes(sha(THEIRS)) == THEIRS


def _keys_with_etags(store: S3BlobStore) -> dict[str, str]:
    listing = raw_client(store.endpoint).list_objects_v2(Bucket=store.bucket)
    return {item["Key"]: item["ETag"] for item in listing.get("Contents", [])}


@pytest.mark.parametrize("whose", ["new", "bank-b's"])
def test_wrong_bytes_through_a_presigned_url_are_refused_and_grant_nothing(
    s3_server: LiveServer, whose: str
) -> None:
    store = _store(s3_server)
    data = MINE if whose == "new" else THEIRS
    with s3_server.api(_tenant(s3_server)) as c:
        signed = _url(c, sha(data))
        # moto, like some S3-compatible servers, keeps the claimed checksum without checking
        # it (and reports it back): only the server's own hashing stands in the way
        forged = b"x" * len(data)
        assert _put(signed, forged, **{"x-amz-sdk-checksum-algorithm": "SHA256"}) == 200
        key = s3incoming.staged_key(store, "ann", sha(data), signed["complete"].rsplit("/", 1)[1])
        head = raw_client(store.endpoint).head_object(
            Bucket=store.bucket, Key=key, ChecksumMode="ENABLED"
        )
        assert head["ChecksumSHA256"] == signed["headers"]["x-amz-checksum-sha256"]  # a lie
        refused = _complete(c, signed)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "integrity"
        assert "nothing stored" in refused.json()["error"]["message"]
        assert store.exists(sha(data)) == (whose != "new")  # nothing under the final key
        if whose != "new":
            assert store.read_bytes(sha(data)) == THEIRS
        assert not [k for k in object_keys(store) if "/incoming/" in k]
        assert _name(c, sha(data), len(data)).status_code == 404
        assert _complete(c, signed).status_code == 404  # the staged object is gone


def test_completing_a_presigned_upload_is_the_uploader_s_alone(s3_server: LiveServer) -> None:
    ann_token = _tenant(s3_server)
    mallory_token = _tenant(s3_server, "mallory")
    with s3_server.api(ann_token) as ann, s3_server.api(mallory_token) as mallory:
        signed = _url(ann, sha(MINE))
        assert _put(signed, MINE) == 200
        upload_id = signed["complete"].rsplit("/", 1)[1]
        unknown = signed["complete"].replace(upload_id, "0" * 32)
        for who in (mallory, ann):
            absent = who.post(unknown.removeprefix("/api/v1"))
            assert absent.status_code == 404
            assert absent.json()["error"]["code"] == "not_found"
        assert who.post(f"/blobs/{sha(MINE)}/presigned/not-an-id").status_code == 404
        stolen = _complete(mallory, signed)
        assert stolen.status_code == 404
        assert stolen.json()["error"] == {
            **absent.json()["error"],
            "message": absent.json()["error"]["message"].replace("0" * 32, upload_id),
            "upload": upload_id,
        }
        assert _complete(ann, signed).status_code == 201
        # completing twice is harmless: finished, like an upload session, and nothing changes
        again = _complete(ann, signed)
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"
        assert _store(s3_server).read_bytes(sha(MINE)) == MINE
        assert _complete(mallory, signed).status_code == 404
        assert _name(mallory, sha(MINE), len(MINE)).status_code == 404
        assert _name(ann, sha(MINE), len(MINE)).status_code == 201


def test_a_large_presigned_upload_is_copied_inside_s3_in_parts(
    home: Path, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # over the multipart threshold the server hashes the staged object, then has S3 copy
    # it (in parts of COPY_PART) to the blob's key, completing only if that key is free
    monkeypatch.setattr(s3incoming, "COPY_PART", 5 << 20)
    env = s3_env(moto_endpoint, s3_bucket, MODELVAULT_S3_MULTIPART_THRESHOLD="1KiB")
    settings = Settings.from_env(env={"MODELVAULT_DB": f"sqlite:///{home}/r.db", **env}, home=home)
    data = bytes(range(256)) * ((11 << 20) // 256) + b"tail"  # three parts: 5, 5 and 1 MiB
    with live_server(settings) as server, server.api(server.token("alice")) as c:
        answers = []
        for _ in range(2):  # new, then already stored: the same answer
            signed = _url(c, sha(data))
            assert _put(signed, data) == 200
            answers.append(_complete(c, signed))
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[0].json() == answers[1].json()
        assert answers[0].json() == {"digest": sha(data), "size": len(data), "stored": True}
        store = _store(server)
        assert store.read_bytes(sha(data)) == data
        assert object_keys(store) == [store.key_of(sha(data))]
        forged = _url(c, sha(data + b"!"))
        assert _put(forged, data + b"?") == 200
        assert _complete(c, forged).status_code == 422
        assert object_keys(store) == [store.key_of(sha(data))]  # nothing else stored


def test_sweep_removes_staged_objects_of_uploads_never_completed(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = open_store(moto_endpoint, s3_bucket, tmp_path / "home")
    blob = store.put_bytes(b"a stored blob").digest
    _, signed = s3incoming.presign(store, "ann", sha(MINE))
    assert httpx.put(signed.url, content=MINE, headers=signed.headers).status_code == 200
    assert len(object_keys(store)) == 2
    assert s3incoming.sweep(store) == 0  # young: its upload may still be completed
    assert s3incoming.sweep(store, now=time.time() + s3incoming.STAGED_AGE + 60) == 1
    assert object_keys(store) == [store.key_of(blob)]  # blobs are not the sweep's


def test_a_starting_server_sweeps_staged_objects(
    home: Path, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"MODELVAULT_DB": f"sqlite:///{home}/r.db", **s3_env(moto_endpoint, s3_bucket)}
    settings = Settings.from_env(env=env, home=home)
    store = open_store(moto_endpoint, s3_bucket, home)
    _, signed = s3incoming.presign(store, "ann", sha(MINE))
    assert httpx.put(signed.url, content=MINE, headers=signed.headers).status_code == 200
    monkeypatch.setattr(routes_blobs, "SWEEP_DELAY_S", 0.0)
    monkeypatch.setattr(s3incoming, "STAGED_AGE", 0.0)  # everything staged counts as old
    with live_server(settings, lifespan="on"):
        deadline = time.monotonic() + 30
        while object_keys(store) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert object_keys(store) == []
