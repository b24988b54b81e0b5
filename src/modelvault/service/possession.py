"""Which blobs a user may name in a version registered through the server.

Blobs are shared by content across projects, so a digest alone must not open another
tenant's files: a version may name a blob only when its registrant can read a version that
already names it, or has shown the server the blob's bytes (uploaded it, or sent it inline).
Anything else is refused exactly as a blob stored nowhere, so the answer tells nothing about
what other projects hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Executable, select

from ..store import schema
from ..timeutil import to_text
from .context import Context

_UP, _VB, _V, _M, _P = (
    schema.blob_uploads,
    schema.version_blobs,
    schema.versions,
    schema.models,
    schema.projects,
)
_CHUNK = 500


def visible(conn: Connection, digests: list[str], readable: frozenset[str] | None) -> set[str]:
    """The digests among *digests* named by a version of a project in *readable* (every
    project when None)."""
    found: set[str] = set()
    for start in range(0, len(digests), _CHUNK):
        query = (
            select(_VB.c.digest)
            .distinct()
            .select_from(
                _VB.join(_V, _V.c.id == _VB.c.version_id)
                .join(_M, _M.c.id == _V.c.model_id)
                .join(_P, _P.c.id == _M.c.project_id)
            )
            .where(_VB.c.digest.in_(digests[start : start + _CHUNK]))
        )
        if readable is not None:
            query = query.where(_P.c.name.in_(sorted(readable)))
        found.update(str(d) for d in conn.execute(query).scalars())
    return found


def unproven(
    ctx: Context, user: str, digests: Iterable[str], readable: frozenset[str] | None
) -> list[str]:
    """Of *digests*, those *user* has neither uploaded nor can read a version naming."""
    wanted = list(dict.fromkeys(digests))
    if not wanted or readable is None:
        return []  # a global admin reads every project
    with ctx.store.read() as conn:
        sent: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start : start + _CHUNK]
            sent.update(
                conn.execute(
                    select(_UP.c.digest).where(_UP.c.user == user, _UP.c.digest.in_(part))
                ).scalars()
            )
        rest = [d for d in wanted if d not in sent]
        seen = visible(conn, rest, readable) if rest else set()
    return [d for d in rest if d not in seen]


def record(ctx: Context, user: str, digests: Iterable[str]) -> None:
    """*user* has shown the server the bytes of *digests* (each already stored)."""
    wanted = list(dict.fromkeys(digests))
    if not wanted:
        return
    at = to_text(ctx.now())
    # each dialect's INSERT … ON CONFLICT, loaded with the dialect in use only
    ignoring: Executable
    if ctx.store.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        ignoring = pg_insert(_UP).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        ignoring = sqlite_insert(_UP).on_conflict_do_nothing()
    with ctx.store.write() as conn:
        for start in range(0, len(wanted), _CHUNK):
            rows = [{"digest": d, "user": user, "uploaded_at": at} for d in wanted[start:][:_CHUNK]]
            # the first upload is what counts; the same user sending the bytes again (or at
            # the same moment, from another request) changes nothing
            conn.execute(ignoring, rows)
