"""The audit log over the wire: queries, the event stream (cursor and long poll),
verification and checkpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import Response

from ..domain import AuditEvent, AuditVerification, Version
from ..errors import NotFound
from .auth import Caller, caller
from .bodies import INT_MAX, ok
from .routing import documented_router

router = documented_router("/api/v1")
Who = Annotated[Caller, Depends(caller)]


@router.get("/projects/{project}/audit", responses={200: {"model": list[AuditEvent]}})
def audit(
    project: str,
    who: Who,
    model: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    newest_first: bool = False,
) -> Response:
    """The project's audit events, filtered; page with ``after`` (a sequence number)."""
    reg = who.read(project)
    return ok(
        reg.audit(
            project=project,
            model=f"{project}/{model}" if model else None,
            actor=actor,
            action=action,
            since=since,
            until=until,
            after_seq=after,
            limit=limit,
            newest_first=newest_first,
        )
    )


@router.get("/projects/{project}/events", responses={200: {"model": list[AuditEvent]}})
def events(
    project: str,
    who: Who,
    after: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    wait: Annotated[float, Query(ge=0, le=60)] = 0.0,
) -> Response:
    """Events after sequence number ``after``, oldest first; with ``wait``, hold the request
    up to that many seconds until one arrives (long poll). Resume from the last ``seq``."""
    return ok(who.read(project).events(after, limit=limit, project=project, wait=wait))


@router.get("/audit/verify", responses={200: {"model": AuditVerification}})
def verify(who: Who) -> Response:
    """Check chain, tree, checkpoint signatures and witness (server-wide; admins)."""
    return ok(who.admin().verify_audit())


@router.post("/audit/checkpoint")
def checkpoint(who: Who) -> Response:
    return ok(who.admin().checkpoint())


@router.get("/audit/public-key")
def public_key(who: Who) -> Response:
    return Response(who.base.audit_public_key(), media_type="application/x-pem-file")


@router.get("/whoami")
def whoami(who: Who) -> Response:
    """The token's user, its project scope and roles."""
    p = who.principal
    return ok(
        {
            "user": p.user,
            "project": p.project,
            "global_admin": p.global_admin,
            "roles": {k: sorted(v) for k, v in p.roles.items()},
        }
    )


@router.get("/search", responses={200: {"model": list[Version]}})
def search_all(q: str, who: Who, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
    """Search every project the token may read."""
    readable = who.readable()
    reg = who.base._acting_as(who.user)
    found = reg.search(q, all_projects=True, limit=None)
    if readable is not None:
        found = [v for v in found if v.project in readable]
    return ok(found[:limit])


@router.get("/audit/checkpoints")
def checkpoints(who: Who) -> Response:
    """Every signed checkpoint (tree size, root hash, time, signature)."""
    return ok(who.base.checkpoints())


@router.get("/audit/proofs/inclusion")
def inclusion(
    seq: Annotated[int, Query(ge=1, le=INT_MAX)],
    who: Who,
    tree_size: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
) -> Response:
    """Proof that event ``seq`` (of a project the token may read) is in the signed log."""
    found = who.base.audit(after_seq=seq - 1, limit=1)
    event = found[0] if found and found[0].seq == seq else None
    readable = who.readable()
    if event is None or (readable is not None and event.project not in readable):
        raise NotFound(f"audit event {seq} does not exist or this token may not see it")
    return ok(who.base.inclusion_proof(seq, tree_size=tree_size))


@router.get("/audit/proofs/consistency")
def consistency(
    old: Annotated[int, Query(ge=1, le=INT_MAX)],
    new: Annotated[int, Query(ge=1, le=INT_MAX)],
    who: Who,
) -> Response:
    """Proof that the checkpointed log of size ``old`` is a prefix of the one of size ``new``."""
    return ok(who.base.consistency_proof(old, new))


@router.get("/projects/{project}/refs/{ref}/explain")
def explain(
    project: str, ref: str, who: Who, env: str | None = None, at: str | None = None
) -> Response:
    """The incident report for ``ref`` (as ``explain --format json`` prints it)."""
    reg = who.read(project)
    return ok(reg.explain(f"{project}/{ref}", env=env, at=at))
