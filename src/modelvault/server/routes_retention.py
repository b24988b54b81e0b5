"""Retention over the wire: legal holds, deleting artifacts, pruning, the cold tier, and the
server-wide sweeps (docs/gc.md).

Holds, deletions, pruning and restoring act on one project's versions and need its ``admin``
permission; where an artifact was archived needs ``read``. Applying the retention policy and
garbage collection cover every project, so they are for global admins. The list of holds
shows those of the projects the token may read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response
from pydantic import Field

from .auth import Caller, caller
from .bodies import Body, ok
from .routes_registry import _ref
from .routing import documented_router

router = documented_router("/api/v1")
Who = Annotated[Caller, Depends(caller)]
R = "/projects/{project}/refs/{ref}"


class ReasonBody(Body):
    reason: str


class PruneBody(Body):
    keep_last: int = Field(ge=1, le=1_000_000)
    reason: str | None = None
    dry_run: bool = False


class SweepBody(Body):
    dry_run: bool = False


class GcBody(Body):
    dry_run: bool = False
    grace_seconds: float = Field(3600.0, ge=0, le=10 * 365 * 86400)


@router.post(R + "/hold", status_code=201)
def hold(project: str, ref: str, body: ReasonBody, who: Who) -> Response:
    """Put a version under a legal hold: its artifact cannot be deleted."""
    reg = who.need(project, "admin")
    return ok(reg.hold(_ref(project, ref), reason=body.reason), status=201)


@router.delete(R + "/hold")
def release_hold(project: str, ref: str, reason: str, who: Who) -> Response:
    reg = who.need(project, "admin")
    return ok(reg.release_hold(_ref(project, ref), reason=reason))


@router.get("/holds")
def holds(who: Who) -> Response:
    """Legal holds in every project the token may read."""
    readable = who.readable()
    found = who.base._acting_as(who.user).holds()
    return ok([h for h in found if readable is None or h["version"].split("/")[0] in readable])


@router.delete(R + "/artifact")
def delete_artifact(project: str, ref: str, reason: str, who: Who) -> Response:
    """Delete the version's artifact (its record and history stay); the bytes go at the
    next garbage collection."""
    reg = who.need(project, "admin")
    return ok(reg.delete_artifact(_ref(project, ref), reason=reason))


@router.post("/projects/{project}/models/{model}/prune")
def prune(project: str, model: str, body: PruneBody, who: Who) -> Response:
    """Delete the artifacts of all but the newest versions (protected ones say why)."""
    reg = who.need(project, "admin")
    found = reg.prune(
        f"{project}/{model}", keep_last=body.keep_last, reason=body.reason, dry_run=body.dry_run
    )
    return ok(found)


@router.post(R + "/restore")
def restore(project: str, ref: str, who: Who) -> Response:
    """Copy an archived artifact back from the cold tier, every blob verified first."""
    return ok(who.need(project, "admin").restore(_ref(project, ref)))


@router.get(R + "/archive")
def archive_of(project: str, ref: str, who: Who) -> Response:
    """Where, when, by whom and why the artifact moved to the cold tier (null while hot)."""
    return ok(who.read(project).archive_of(_ref(project, ref)))


@router.post("/retention/apply")
def apply_retention(body: SweepBody, who: Who) -> Response:
    """Apply the server's retention policy file to every project (global admins)."""
    return ok(who.admin().apply_retention(dry_run=body.dry_run))


@router.post("/gc")
def gc(body: GcBody, who: Who) -> Response:
    """Mark and sweep the blob store (global admins)."""
    return ok(who.admin().gc(dry_run=body.dry_run, grace_seconds=body.grace_seconds))
