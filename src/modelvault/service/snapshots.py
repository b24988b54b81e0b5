"""Dataset snapshot use-cases: snapshot a path (manifest stored, data copied only on request),
record a pinned external reference, resolve, list and diff snapshots, and read one's files.

A snapshot reference is a full digest, a digest prefix (``sha256:`` and 8+ hex digits), a
NAME (its newest snapshot) or NAME@DIGEST.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ..audit import EventDraft, append
from ..canonical import canonical_json, is_digest, sha256_digest
from ..datasets import parse_dataset
from ..errors import IntegrityError, InvalidInput, NotFound
from ..filecache import HashCache
from ..limits import check_key, check_name, check_text
from ..manifest import manifest_bytes, parse_manifest, safe_dest_path
from ..store import schema
from ..timeutil import to_text
from ..tracking.records import FileChange, Snapshot, SnapshotDiff
from ..treehash import hash_tree
from .context import Context, ensure_project
from .runs import snapshot_from_row

SN, P = schema.snapshots, schema.projects


def hash_cache(ctx: Context) -> HashCache:
    return HashCache(ctx.settings.home / "cache" / "file-digests.db")


def _check_name(name: str) -> str:
    return check_key(name, what="dataset")


def _record(
    ctx: Context,
    project: str,
    *,
    name: str,
    system: str,
    digest: str,
    uri: str | None,
    file_count: int | None,
    size: int | None,
    stored: bool,
) -> Snapshot:
    with ctx.store.write() as conn:
        at = ctx.now()
        project_id = ensure_project(conn, ctx, project, at)
        row = conn.execute(
            select(SN).where(
                SN.c.project_id == project_id, SN.c.name == name, SN.c.digest == digest
            )
        ).first()
        if row is not None:
            if stored and not row.stored:
                append(
                    conn,
                    EventDraft(
                        "dataset.store",
                        f"dataset:{name}@{digest}",
                        project=project,
                        after={"name": name, "digest": digest, "stored": True},
                    ),
                    actor=ctx.actor,
                    at=at,
                )
                conn.execute(update(SN).where(SN.c.id == row.id).values(stored=1))
                row = conn.execute(select(SN).where(SN.c.id == row.id)).one()
            return snapshot_from_row(row, project)
        event = append(
            conn,
            EventDraft(
                "dataset.snapshot",
                f"dataset:{name}@{digest}",
                project=project,
                after={
                    "name": name,
                    "system": system,
                    "digest": digest,
                    "uri": uri,
                    "files": file_count,
                    "size": size,
                    "stored": stored,
                },
            ),
            actor=ctx.actor,
            at=at,
        )
        new_id = conn.execute(
            insert(SN)
            .values(
                project_id=project_id,
                name=name,
                system=system,
                digest=digest,
                uri=uri,
                file_count=file_count,
                size=size,
                stored=int(stored),
                created_by=ctx.actor,
                created_at=to_text(at),
                audit_seq=event.seq,
            )
            .returning(SN.c.id)
        ).scalar_one()
        return snapshot_from_row(conn.execute(select(SN).where(SN.c.id == new_id)).one(), project)


def snapshot_path(
    ctx: Context,
    path: Path,
    project: str,
    *,
    name: str | None = None,
    store_data: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Snapshot:
    """Hash every file under *path* (cached, in parallel) and record the manifest; with
    *store_data* the files are copied into the blob store too, so the snapshot can be read
    back after the source is gone (evaluation sets)."""
    name = _check_name(name or Path(path).absolute().name)
    entries = hash_tree(Path(path), cache=hash_cache(ctx), progress=progress)
    body = manifest_bytes(entries)
    digest = ctx.blobs.put_bytes(body).digest
    if store_data:
        root = Path(path)
        for entry in entries:
            if ctx.blobs.exists(entry.digest):
                continue
            source = root if not root.is_dir() else root.joinpath(*entry.path.split("/"))
            put = ctx.blobs.put_file(source)
            if put.digest != entry.digest:
                raise InvalidInput(
                    f"{entry.path} changed while the snapshot was taken; take it again",
                    path=entry.path,
                )
    ctx.blobs.sync()
    return _record(
        ctx,
        project,
        name=name,
        system="modelvault",
        digest=digest,
        uri=str(Path(path).resolve()),
        file_count=len(entries),
        size=sum(e.size for e in entries),
        stored=store_data,
    )


def record_uploaded(
    ctx: Context,
    project: str,
    *,
    name: str,
    manifest_text: str,
    uri: str | None,
    stored: bool,
    unproven: Callable[[list[str]], list[str]] | None = None,
) -> Snapshot:
    """Record a snapshot hashed elsewhere (the remote SDK): the manifest is stored and read
    back (paths checked); when *stored*, every file it names must be uploaded already, and
    among those, *unproven* names the ones the caller may not name (treated as absent)."""
    from .artifacts import read_manifest

    name = _check_name(name)
    uri = check_text(uri, limit="reference_chars", what="uri")
    digest = ctx.blobs.put_bytes(manifest_text.encode("utf-8")).digest
    manifest = read_manifest(ctx, digest)
    if stored:
        absent = [f.digest for f in manifest.files if not ctx.blobs.exists(f.digest)]
        if not absent and unproven is not None:
            absent = unproven([f.digest for f in manifest.files])
        if absent:
            raise NotFound(
                f"{len(absent)} file(s) of the snapshot are not uploaded (first: {absent[0]})",
                digest=absent[0],
            )
    ctx.blobs.sync()
    return _record(
        ctx,
        project,
        name=name,
        system="modelvault",
        digest=digest,
        uri=uri,
        file_count=len(manifest.files),
        size=sum(f.size for f in manifest.files),
        stored=stored,
    )


def snapshot_external(ctx: Context, reference: str, project: str, name: str | None) -> Snapshot:
    """Record a pinned external reference (S3 version, lakeFS commit, Delta version, Hugging
    Face revision, DVC file) as a snapshot; floating references are refused."""
    if "://" not in reference:
        raise InvalidInput(
            f"{reference!r} is not a pinned URI; snapshot a local path with `data snapshot`",
            field="dataset",
        )
    ref = parse_dataset(reference, None)
    shown = name or ref.name or _name_from_uri(reference)
    digest = ref.digest or sha256_digest(canonical_json({"system": ref.system, "uri": ref.uri}))
    return _record(
        ctx,
        project,
        name=_check_name(shown),
        system=ref.system,
        digest=digest,
        uri=ref.uri,
        file_count=None,
        size=None,
        stored=False,
    )


def _name_from_uri(uri: str) -> str:
    """``s3://b/claims.parquet?versionId=V`` -> ``claims.parquet``; the last path segment
    without its pin, or the host when there is no path."""
    rest = uri.split("://", 1)[1].split("?", 1)[0]
    parts = [p for p in rest.split("/") if p]
    last = parts[-1] if parts else "dataset"
    return last.split("@", 1)[0] or "dataset"


def snapshot_row(conn: Connection, text: str, project: str) -> Any:
    """The snapshot row a reference names in *project*."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("a snapshot reference must not be empty", field="snapshot")
    text = text.strip()
    base = (
        select(SN)
        .select_from(SN.join(P, SN.c.project_id == P.c.id))
        .where(P.c.name == check_name(project, what="project name"))
        .order_by(SN.c.id.desc())
    )
    name, sep, digest = text.partition("@")
    if text.startswith("sha256:") or text.startswith("md5:"):
        name, digest = "", text
    elif sep:
        name = _check_name(name)
    else:
        name, digest = _check_name(text), ""
    if name:
        base = base.where(SN.c.name == name)
    if digest:
        if is_digest(digest) or digest.startswith("md5:"):
            base = base.where(SN.c.digest == digest)
        else:
            hexpart = digest.removeprefix("sha256:")
            if len(hexpart) < 8 or any(c not in "0123456789abcdef" for c in hexpart):
                raise InvalidInput(
                    f"snapshot digest {digest!r} must be sha256: and at least 8 hex digits",
                    field="snapshot",
                )
            base = base.where(SN.c.digest.like(f"sha256:{hexpart}%"))
    rows = conn.execute(base.limit(2)).all()
    if not rows:
        raise NotFound(f"no snapshot {text} in project {project}", snapshot=text)
    if digest and not is_digest(digest) and len({r.digest for r in rows}) > 1:
        raise InvalidInput(f"snapshot digest prefix {digest} is ambiguous; give more of it")
    return rows[0]


def get_snapshot(ctx: Context, text: str, project: str) -> Snapshot:
    with ctx.store.read() as conn:
        return snapshot_from_row(snapshot_row(conn, text, project), project)


def newest_digest(conn: Connection, project_id: int, name: str) -> str | None:
    return conn.execute(
        select(SN.c.digest)
        .where(SN.c.project_id == project_id, SN.c.name == name)
        .order_by(SN.c.id.desc())
        .limit(1)
    ).scalar()


def list_snapshots(ctx: Context, project: str, name: str | None = None) -> list[Snapshot]:
    query = (
        select(SN)
        .select_from(SN.join(P, SN.c.project_id == P.c.id))
        .where(P.c.name == check_name(project, what="project name"))
        .order_by(SN.c.name, SN.c.id.desc())
    )
    if name is not None:
        query = query.where(SN.c.name == _check_name(name))
    with ctx.store.read() as conn:
        return [snapshot_from_row(r, project) for r in conn.execute(query)]


def _files(ctx: Context, snap: Snapshot) -> dict[str, str]:
    if snap.system != "modelvault":
        raise InvalidInput(
            f"snapshot {snap.ref} is an external {snap.system} reference; its files are not "
            "listed in modelvault",
            field="snapshot",
        )
    manifest = parse_manifest(ctx.blobs.read_bytes(snap.digest))
    return {f.path: f.digest for f in manifest.files}


def diff_snapshots(ctx: Context, a: str, b: str, project: str) -> SnapshotDiff:
    left, right = get_snapshot(ctx, a, project), get_snapshot(ctx, b, project)
    fa, fb = _files(ctx, left), _files(ctx, right)
    return SnapshotDiff(
        a=left.ref,
        b=right.ref,
        added=tuple(FileChange(p, None, fb[p]) for p in sorted(fb.keys() - fa.keys())),
        removed=tuple(FileChange(p, fa[p], None) for p in sorted(fa.keys() - fb.keys())),
        changed=tuple(
            FileChange(p, fa[p], fb[p]) for p in sorted(fa.keys() & fb.keys()) if fa[p] != fb[p]
        ),
    )


def materialize(ctx: Context, snap: Snapshot) -> Path:
    """A directory holding the snapshot's files, every digest verified: from the blob store
    when the data was stored, else from its source path if that still hashes the same."""
    if snap.system != "modelvault":
        raise InvalidInput(f"snapshot {snap.ref} is external; modelvault cannot read its data")
    manifest = parse_manifest(ctx.blobs.read_bytes(snap.digest))
    if snap.stored:
        dest = Path(tempfile.mkdtemp(prefix="mv-snapshot-"))
        for f in manifest.files:
            ctx.blobs.copy_to(f.digest, safe_dest_path(dest, f.path))
        return dest
    source = Path(snap.uri or "")
    if not snap.uri or not source.exists():
        raise NotFound(
            f"the data of snapshot {snap.ref} was not stored and {snap.uri} is gone; "
            "snapshot evaluation sets with --store",
            snapshot=snap.ref,
        )
    now = manifest_bytes(hash_tree(source, cache=hash_cache(ctx)))
    if sha256_digest(now) != snap.digest:
        raise IntegrityError(
            f"{snap.uri} no longer matches snapshot {snap.ref}; its files changed since",
            snapshot=snap.ref,
        )
    return source
