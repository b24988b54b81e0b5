"""The audit witness on S3 (a real S3-protocol server on loopback): checkpoints written once,
locked when the bucket has Object Lock, compared by verify like the directory witness; a
rewritten database disagrees with it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from modelvault import InvalidInput, Registry, Settings

from .backends import raw_db
from .conftest import FakeClock, write_model
from .s3_helpers import REGION, raw_client

Opener = Callable[[str], Registry]


def _open(settings: Settings, clock: FakeClock, endpoint: str, witness: str) -> Registry:
    return Registry(
        settings=replace(
            settings,
            audit_witness=witness,
            s3_endpoint_url=endpoint,
            s3_region=REGION,
            s3_timeout="5",
            s3_max_attempts="2",
        ),
        clock=clock,
    )


def _story(reg: Registry, bob: Registry, tmp_path: Path) -> None:
    for i in (1, 2, 3):
        reg.register("fraud", write_model(tmp_path, f"v{i}", b"w%d" % i), capture_environment=False)
    reg.promote("fraud:1", "staging")
    bob.approve("fraud:1", comment="ok")
    reg.promote("fraud:1", "production", reason="launch")
    assert reg.checkpoint() is not None
    reg.set_alias("fraud", "champion", "1")
    reg.promote("fraud:2", "staging")
    assert reg.checkpoint() is not None


@pytest.fixture
def locked_bucket(moto_endpoint: str, aws_env: None) -> str:
    name = f"mv-lock-{uuid.uuid4().hex[:20]}"
    raw_client(moto_endpoint).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    s3 = raw_client(endpoint)
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def test_checkpoints_go_to_s3_once_and_verify_compares_with_them(
    settings: Settings, clock: FakeClock, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    reg = _open(settings, clock, moto_endpoint, f"s3://{s3_bucket}/audit/witness")
    bob = Registry(settings=replace(reg.settings, actor="bob"), clock=clock)
    _story(reg, bob, tmp_path)
    stored = reg.checkpoints()
    objects = _objects(moto_endpoint, s3_bucket)
    assert sorted(objects) == [
        f"audit/witness/checkpoint-{c['tree_size']:012d}.json" for c in stored
    ]
    assert [json.loads(b) for b in objects.values()] == stored
    assert reg.verify_audit().ok and reg.verify_audit().checkpoints == 2
    # written once: a second write of the same tree size leaves the object as it was
    from modelvault.checkpoints import Checkpoint
    from modelvault.witness import open_witness

    witness = open_witness(reg.settings.audit_witness, reg.settings)
    assert witness is not None
    first = Checkpoint.from_json(stored[0])
    witness.write(replace(first, ts="2030-01-01T00:00:00.000000Z"))
    assert witness.read()[0] == first
    # the database rewritten behind the log's back: the tail cut and the head moved back,
    # the newest checkpoint deleted; the witness still holds it
    last = stored[-1]["tree_size"]
    with raw_db(reg) as db:
        db.execute(text("DELETE FROM mv_audit_events WHERE seq > :n"), {"n": last - 2})
        db.execute(text("DELETE FROM mv_audit_personal WHERE seq > :n"), {"n": last - 2})
        db.execute(text("DELETE FROM mv_audit_checkpoints WHERE tree_size = :t"), {"t": last})
        db.execute(text("DELETE FROM mv_audit_tree"))
        head = db.execute(
            text("SELECT hash FROM mv_audit_events WHERE seq = :n"), {"n": last - 2}
        ).scalar()
        db.execute(text("UPDATE mv_audit_head SET seq = :n, hash = :h"), {"n": last - 2, "h": head})
    result = reg.verify_audit()
    assert not result.ok and result.check == "witness", result.problem
    assert result.first_bad_seq == last - 1 and "removed from the end" in (result.problem or "")
    bob.close()
    reg.close()


def test_a_database_rewritten_and_re_signed_disagrees_with_the_s3_witness(
    settings: Settings, clock: FakeClock, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    from modelvault import checkpoints as cps
    from modelvault import merkle
    from modelvault.eventhash import event_hash

    reg = _open(settings, clock, moto_endpoint, f"s3://{s3_bucket}/w")
    bob = Registry(settings=replace(reg.settings, actor="bob"), clock=clock)
    _story(reg, bob, tmp_path)
    # an administrator who also holds the signing key edits event 4, recomputes every later
    # hash, the head, the tree and every checkpoint's root, and re-signs them: the chain,
    # the tree and the signatures all agree again; only the witness remembers
    key = cps.load_private(Path(reg.settings.audit_key))
    with raw_db(reg) as db:
        rows = db.execute(text("SELECT * FROM mv_audit_events ORDER BY seq")).mappings().all()
        prev, leaves = "0" * 64, []
        for row in rows:
            fields = {k: row[k] for k in row if k not in ("hash", "prev_hash")}
            if fields["seq"] == 4:
                fields["reason"] = "nothing to see"
            for k in ("before", "after"):
                fields[k] = json.loads(fields[k]) if fields[k] is not None else None
            digest = event_hash(**fields, prev_hash=prev)
            db.execute(
                text("UPDATE mv_audit_events SET reason=:r, prev_hash=:p, hash=:h WHERE seq=:s"),
                {"r": fields["reason"], "p": prev, "h": digest, "s": fields["seq"]},
            )
            leaves.append(merkle.leaf_hash(bytes.fromhex(digest)))
            prev = digest
        db.execute(text("UPDATE mv_audit_head SET hash = :h"), {"h": prev})
        db.execute(text("DELETE FROM mv_audit_tree"))
        for cp in reg.checkpoints():
            root = merkle.root_of(leaves[: cp["tree_size"]]).hex()
            forged = cps.sign(key, cp["tree_size"], root, cp["ts"])
            db.execute(
                text("UPDATE mv_audit_checkpoints SET root=:r, signature=:s WHERE tree_size=:t"),
                {"r": forged.root, "s": forged.signature, "t": forged.tree_size},
            )
    reg.checkpoint()  # refills the tree from the rewritten events
    result = reg.verify_audit()
    assert not result.ok and result.check == "witness", result.problem
    first = reg.checkpoints()[0]["tree_size"]
    assert f"witness checkpoint {first} does not match the log" in (result.problem or "")
    # a witness object that is not a checkpoint is named
    raw_client(moto_endpoint).put_object(
        Bucket=s3_bucket, Key="w/checkpoint-999999999999.json", Body=b"not json"
    )
    result = reg.verify_audit()
    assert not result.ok and result.check == "witness"
    assert "checkpoint-999999999999.json is unreadable" in (result.problem or "")
    bob.close()
    reg.close()


def test_with_object_lock_checkpoints_are_locked(
    settings: Settings, clock: FakeClock, moto_endpoint: str, locked_bucket: str, tmp_path: Path
) -> None:
    reg = _open(settings, clock, moto_endpoint, f"s3://{locked_bucket}/w")
    bob = Registry(settings=replace(reg.settings, actor="bob"), clock=clock)
    _story(reg, bob, tmp_path)
    s3 = raw_client(moto_endpoint)
    keys = sorted(_objects(moto_endpoint, locked_bucket))
    assert len(keys) == 2
    for key in keys:
        head = s3.head_object(Bucket=locked_bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"].year >= 2035
    # a locked checkpoint cannot be deleted, even by someone with the bucket's credentials
    version = s3.head_object(Bucket=locked_bucket, Key=keys[0])["VersionId"]
    with pytest.raises(Exception, match=r"AccessDenied|locked|retention"):
        s3.delete_object(Bucket=locked_bucket, Key=keys[0], VersionId=version)
    assert reg.verify_audit().ok
    bob.close()
    reg.close()


def test_a_bad_witness_setting_is_one_clear_error(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    with Registry(settings=replace(settings, audit_witness="ftp://x/y"), clock=clock) as reg:
        reg.register("m", write_model(tmp_path, "a", b"a"), capture_environment=False)
        with pytest.raises(InvalidInput, match="use a directory, s3://BUCKET/PREFIX or off"):
            reg.checkpoint()
