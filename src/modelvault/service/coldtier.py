"""The cold tier: moving a version's artifact blobs to a second blob store and back.

Archiving copies every artifact blob to the cold store, verifies each there, then records
the archive with its audit event; only then may the hot copies go (garbage collection no
longer counts them). Restoring stages every blob from the cold store, verified, before the
first one enters the hot store, so a corrupt cold copy leaves the hot store untouched.
Nothing ever deletes from the cold store.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, insert, select

from ..audit import EventDraft, append
from ..blobs import BlobStore, open_blob_store
from ..canonical import hex_of
from ..domain import Manifest
from ..errors import Conflict, IntegrityError, InvalidInput, NotFound
from ..store import schema
from ..timeutil import to_text
from .context import Context, version_row
from .gc import ARTIFACT_ROLES, Guards, hot_reason, subject

VB, ARC, DEL = schema.version_blobs, schema.archives, schema.artifact_deletions


def _location(url: str) -> str:
    return url if "://" in url else str(Path(url).expanduser().absolute())


def cold_store(ctx: Context, url: str | None = None) -> tuple[BlobStore, str] | None:
    """The cold store and its location (*url*, else the ``cold_blobs`` setting), or None."""
    url = url or ctx.settings.cold_blobs
    if not url or url.lower() in ("none", "off"):
        return None
    if urlsplit(url).scheme.lower() == "memory":
        raise InvalidInput("the cold tier must outlive the process: use a directory or s3://")
    location = _location(url)
    if location.removeprefix("file://") == _location(ctx.settings.blobs).removeprefix("file://"):
        raise InvalidInput("the cold tier must be another blob store than MODELVAULT_BLOBS")
    return open_blob_store(url, ctx.settings), location


def _artifact_blobs(conn: Connection, version_id: int) -> list[str]:
    return list(
        conn.execute(
            select(VB.c.digest)
            .where(VB.c.version_id == version_id, VB.c.role.in_(ARTIFACT_ROLES))
            .order_by(VB.c.digest)
        ).scalars()
    )


def _staging(ctx: Context) -> tempfile.TemporaryDirectory[str]:
    home = Path(ctx.settings.home)
    home.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".modelvault-cold-", dir=home)


def archive(
    ctx: Context, cold: tuple[BlobStore, str], ref: str, why: str, guard: Guards
) -> tuple[dict[str, Any], list[str]]:
    """Move the artifact of *ref* to the cold tier; returns its line for the report and the
    digests whose hot copies may now go."""
    store, location = cold
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        digests = _artifact_blobs(conn, row.id)
    size = 0
    with _staging(ctx) as tmp:
        for digest in digests:
            if not store.exists(digest):
                staged = Path(tmp) / hex_of(digest)
                ctx.blobs.copy_to(digest, staged)  # verifies the hot bytes
                store.put_file(staged)
                staged.unlink()
            if not store.verify(digest):
                raise IntegrityError(
                    f"the cold copy of blob {digest} in {location} does not match its digest; "
                    f"{subject(row)} stays hot",
                    digest=digest,
                )
            size += store.size(digest)
    store.sync()
    with ctx.store.write() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        if conn.execute(select(ARC.c.version_id).where(ARC.c.version_id == row.id)).first():
            raise Conflict(f"the artifact of {subject(row)} is already archived")
        if conn.execute(select(DEL.c.version_id).where(DEL.c.version_id == row.id)).first():
            raise Conflict(f"the artifact of {subject(row)} was deleted meanwhile")
        blocked = hot_reason(conn, row, guard)
        if blocked:
            return {"version": subject(row), "action": "kept", "why": blocked}, []
        at = ctx.now()
        conn.execute(
            insert(ARC).values(
                version_id=row.id,
                location=location,
                blobs=len(digests),
                bytes=size,
                archived_by=ctx.actor,
                archived_at=to_text(at),
                reason=why,
            )
        )
        append(
            conn,
            EventDraft(
                "version.archive",
                subject(row),
                project=row.project_name,
                model=row.model_name,
                after={
                    "version": row.number,
                    "artifact_digest": row.artifact_digest,
                    "location": location,
                    "blobs": len(digests),
                    "bytes": size,
                },
                reason=why,
            ),
            actor=ctx.actor,
            at=at,
        )
    return {"version": subject(row), "action": "archived", "why": why}, digests


def archive_of(ctx: Context, ref: str) -> dict[str, Any] | None:
    """Where and when the artifact of *ref* was archived, or None while it is hot."""
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        found = conn.execute(select(ARC).where(ARC.c.version_id == row.id)).first()
    if found is None:
        return None
    return {
        "version": subject(row),
        "location": found.location,
        "blobs": found.blobs,
        "bytes": found.bytes,
        "archived_by": found.archived_by,
        "archived_at": found.archived_at,
        "reason": found.reason,
    }


def cold_manifest(ctx: Context, ref: str) -> Manifest | None:
    """The manifest of an archived version, read from the cold tier; None if not archived."""
    from .artifacts import read_manifest

    with ctx.store.read() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        found = conn.execute(select(ARC.c.location).where(ARC.c.version_id == row.id)).first()
    if found is None:
        return None
    opened = cold_store(ctx) or cold_store(ctx, found.location)
    assert opened is not None
    return read_manifest(replace(ctx, blobs=opened[0]), row.artifact_digest)


def restore(ctx: Context, ref: str) -> dict[str, Any]:
    """Copy the archived artifact of *ref* back to the hot store, every blob verified first;
    ``restored`` is False when it was not archived."""
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        found = conn.execute(select(ARC).where(ARC.c.version_id == row.id)).first()
        digests = _artifact_blobs(conn, row.id)
    if found is None:
        return {"version": subject(row), "restored": False, "blobs": 0, "bytes": 0}
    opened = cold_store(ctx) or cold_store(ctx, found.location)
    assert opened is not None  # a recorded location is never empty
    store, location = opened
    missing = [d for d in digests if not ctx.blobs.exists(d)]
    size = 0
    with _staging(ctx) as tmp:
        staged: list[tuple[str, Path]] = []
        for digest in missing:
            path = Path(tmp) / hex_of(digest)
            try:
                size += store.copy_to(digest, path)  # verified against the digest
            except IntegrityError as exc:
                raise IntegrityError(
                    f"cannot restore {subject(row)}: the cold copy of blob {digest} in "
                    f"{location} is corrupt ({exc}); nothing was restored",
                    digest=digest,
                ) from None
            except NotFound:
                raise NotFound(
                    f"cannot restore {subject(row)}: blob {digest} is missing from the cold "
                    f"tier {location}; nothing was restored",
                    digest=digest,
                ) from None
            staged.append((digest, path))
        for digest, path in staged:
            put = ctx.blobs.put_file(path)
            if put.digest != digest:  # the staged file changed under us
                raise IntegrityError(f"blob {digest} changed while it was restored")
    ctx.blobs.sync()
    with ctx.store.write() as conn:
        gone = conn.execute(delete(ARC).where(ARC.c.version_id == row.id)).rowcount
        if gone:
            append(
                conn,
                EventDraft(
                    "artifact.restore",
                    subject(row),
                    project=row.project_name,
                    model=row.model_name,
                    before={"location": found.location},
                    after={
                        "version": row.number,
                        "artifact_digest": row.artifact_digest,
                        "blobs": len(missing),
                        "bytes": size,
                    },
                ),
                actor=ctx.actor,
                at=ctx.now(),
            )
    return {"version": subject(row), "restored": bool(gone), "blobs": len(missing), "bytes": size}
