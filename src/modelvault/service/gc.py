"""Deleting artifacts safely, legal holds, pruning, and garbage collection of blobs.

Deleting a version's artifact records the deletion (who, when, why) and keeps the version's
record and history; the bytes go only when `gc` sweeps. `gc` is the only code path that
removes blobs. It marks from roots and errs on the side of keeping:

- every blob of a version whose artifact is not deleted, and the non-artifact blobs (captured
  environment, code diff) of deleted ones;
- every ``sha256:`` digest written anywhere else in the metadata (runs, snapshots,
  evaluation reports, aliases, deployments ...), except in the audit log, which records
  history, not what is still needed;
- every blob a current deployment references;
- transitively, every digest inside a small root blob (manifests of snapshots and versions,
  evaluation outputs);
- every blob younger than the grace period: uploads in flight, whose metadata has not
  committed yet (a registration that reuses an existing blob refreshes its time).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, String, Text, delete, insert, select

from ..audit import EventDraft, append
from ..errors import Conflict, InvalidInput, NotFound
from ..lifecycle import Stage
from ..limits import check_text
from ..retention import RetentionPolicy, load_retention, window_text
from ..store import schema
from ..timeutil import from_text, to_text
from .context import Context, version_row

V, M, P = schema.versions, schema.models, schema.projects
VB, S, A = schema.version_blobs, schema.stage_intervals, schema.alias_intervals
DEL, HOLD, ARC = schema.artifact_deletions, schema.holds, schema.archives
DIGEST_RE = re.compile(rb"sha256:[0-9a-f]{64}")
ARTIFACT_ROLES = ("manifest", "file")
SCAN_LIMIT = 32 << 20  # root blobs larger than this are not read for nested digests
NOT_SCANNED = {
    schema.audit_events.name,
    schema.audit_tree.name,
    schema.audit_checkpoints.name,
    schema.audit_head.name,
    schema.audit_personal.name,
    schema.blob_uploads.name,  # who sent a blob's bytes: a permission, not a reference
    schema.inline_blobs.name,  # blobs themselves (service/inlineblobs.py), not references
    VB.name,
    V.name,
    schema.run_metrics.name,
}


def subject(row: Any) -> str:
    return f"{row.project_name}/{row.model_name}:{row.number}"


@dataclass(frozen=True, slots=True)
class Guards:
    """What protects versions from deletion, read once per command."""

    policy: RetentionPolicy
    deployed: set[str]  # blobs current deployments serve
    served: dict[tuple[str, str, int], datetime]  # (project, model, number) -> last served


def guards(ctx: Context, policy: RetentionPolicy | None = None) -> Guards:
    """The protections; without a policy file every model gets the default window."""
    from .deployments import deployment_roots

    policy = policy or load_retention(Path(ctx.settings.retention), missing_ok=True)
    return Guards(policy, deployment_roots(ctx), _served_since(ctx, policy))


def _served_since(ctx: Context, policy: RetentionPolicy) -> dict[tuple[str, str, int], datetime]:
    """When each version a past deployment state served stopped being served, for states
    that ended within the longest retention window."""
    from ..deploy import spec as specs
    from .deployments import _state_select

    longest = max(
        [policy.defaults.production_window]
        + [rules.production_window for rules in policy.models.values()]
    )
    cutoff = to_text(ctx.now() - longest)
    DS = schema.deployment_states
    served: dict[tuple[str, str, int], datetime] = {}
    with ctx.store.read() as conn:
        rows = conn.execute(_state_select().where(DS.c.valid_to >= cutoff)).all()
    for row in rows:
        ended = from_text(row.valid_to)
        for release in specs.from_json(json.loads(row.spec)).releases():
            pairs = [(release.model, release.version)]
            if release.config_model is not None and release.config_version is not None:
                pairs.append((release.config_model, release.config_version))
            for model, number in pairs:
                key = (row.project_name, model, number)
                if key not in served or served[key] < ended:
                    served[key] = ended
    return served


def hot_reason(conn: Connection, row: Any, guard: Guards) -> str | None:
    """Why the artifact of *row* must stay in the hot store (not even archived), or None."""
    if row.stage == Stage.PRODUCTION.value:
        return "it is in production"
    if row.artifact_digest in guard.deployed:
        return "a deployment serves it"
    alias = conn.execute(
        select(A.c.name).where(A.c.version_id == row.id, A.c.valid_to.is_(None)).limit(1)
    ).first()
    if alias is not None:
        return f"the alias {alias.name!r} points to it"
    return None


def protection(conn: Connection, ctx: Context, row: Any, guard: Guards) -> str | None:
    """Why the artifact of *row* must not be deleted, or None."""
    if conn.execute(select(HOLD.c.reason).where(HOLD.c.version_id == row.id)).first():
        return "it is under a legal hold"
    hot = hot_reason(conn, row, guard)
    if hot:
        return hot
    ended = conn.execute(
        select(S.c.valid_to).where(S.c.version_id == row.id, S.c.stage == Stage.PRODUCTION.value)
    ).all()
    now = ctx.now()
    rules = guard.policy.for_model(row.project_name, row.model_name)
    window = f"the retention window ({window_text(rules.production_window_days)})"
    for (valid_to,) in ended:
        if valid_to is None or now - from_text(valid_to) < rules.production_window:
            return f"it was in production within {window}"
    served = guard.served.get((row.project_name, row.model_name, row.number))
    if served is not None and now - served < rules.production_window:
        return f"it was deployed within {window}"
    return None


def delete_artifact(ctx: Context, ref: str, reason: str | None) -> dict[str, Any]:
    why = check_text(reason, limit="reason_chars", what="reason")
    if not why:
        raise InvalidInput("deleting an artifact needs --reason", field="reason")
    guard = guards(ctx)
    with ctx.store.write() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        return delete_in(conn, ctx, row, why, guard)


def delete_in(conn: Connection, ctx: Context, row: Any, why: str, guard: Guards) -> dict[str, Any]:
    if conn.execute(select(DEL.c.deleted_at).where(DEL.c.version_id == row.id)).first():
        raise Conflict(f"the artifact of {subject(row)} is already deleted")
    blocked = protection(conn, ctx, row, guard)
    if blocked:
        raise Conflict(f"cannot delete the artifact of {subject(row)}: {blocked}")
    at = ctx.now()
    conn.execute(
        insert(DEL).values(
            version_id=row.id, deleted_by=ctx.actor, deleted_at=to_text(at), reason=why
        )
    )
    append(
        conn,
        EventDraft(
            "version.delete_artifact",
            subject(row),
            project=row.project_name,
            model=row.model_name,
            after={"version": row.number, "artifact_digest": row.artifact_digest},
            reason=why,
        ),
        actor=ctx.actor,
        at=at,
    )
    return {"version": subject(row), "deleted_by": ctx.actor, "deleted_at": to_text(at)}


def deletion_of(ctx: Context, ref: str) -> dict[str, Any] | None:
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        found = conn.execute(select(DEL).where(DEL.c.version_id == row.id)).first()
    if found is None:
        return None
    return {"deleted_by": found.deleted_by, "deleted_at": found.deleted_at, "reason": found.reason}


def prune(
    ctx: Context, model: str, keep_last: int, reason: str | None, dry_run: bool
) -> list[dict[str, Any]]:
    """Delete the artifacts of every version of *model* but the newest *keep_last*, except
    protected ones; returns one line per version older than those kept."""
    if keep_last < 1:
        raise InvalidInput("--keep-last must be at least 1", field="keep_last")
    why = check_text(reason, limit="reason_chars", what="reason") or f"keep the last {keep_last}"
    guard = guards(ctx)
    out = []
    with ctx.store.write() as conn:
        from .context import resolve_model

        project, name = resolve_model(ctx, model)
        numbers = (
            conn.execute(
                select(V.c.number)
                .select_from(V.join(M, V.c.model_id == M.c.id).join(P, M.c.project_id == P.c.id))
                .where(P.c.name == project, M.c.name == name)
                .order_by(V.c.number.desc())
            )
            .scalars()
            .all()
        )
        if not numbers:
            raise NotFound(f"model {project}/{name} does not exist or has no versions")
        for number in numbers[keep_last:]:
            row = version_row(conn, ctx, ctx.ref(f"{project}/{name}:{number}"))
            if conn.execute(select(DEL.c.version_id).where(DEL.c.version_id == row.id)).first():
                continue
            blocked = protection(conn, ctx, row, guard)
            if blocked:
                out.append({"version": subject(row), "action": "kept", "why": blocked})
            elif dry_run:
                out.append({"version": subject(row), "action": "would delete", "why": why})
            else:
                delete_in(conn, ctx, row, why, guard)
                out.append({"version": subject(row), "action": "deleted", "why": why})
    return out


# -- holds ------------------------------------------------------------------------------------


def hold(ctx: Context, ref: str, reason: str | None, *, remove: bool = False) -> dict[str, Any]:
    why = check_text(reason, limit="reason_chars", what="reason")
    if not why:
        raise InvalidInput("a legal hold needs --reason", field="reason")
    with ctx.store.write() as conn:
        row = version_row(conn, ctx, ctx.ref(ref))
        held = conn.execute(select(HOLD).where(HOLD.c.version_id == row.id)).first()
        at = ctx.now()
        if remove:
            if held is None:
                raise NotFound(f"{subject(row)} is not under a legal hold")
            conn.execute(delete(HOLD).where(HOLD.c.version_id == row.id))
        else:
            if held is not None:
                raise Conflict(f"{subject(row)} is already under a legal hold")
            conn.execute(
                insert(HOLD).values(
                    version_id=row.id, reason=why, created_by=ctx.actor, created_at=to_text(at)
                )
            )
        append(
            conn,
            EventDraft(
                "hold.remove" if remove else "hold.add",
                subject(row),
                project=row.project_name,
                model=row.model_name,
                before={"held": held is not None},
                after={"held": not remove},
                reason=why,
            ),
            actor=ctx.actor,
            at=at,
        )
    return {"version": subject(row), "held": not remove, "reason": why}


def holds(ctx: Context) -> list[dict[str, Any]]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(HOLD, V.c.number, M.c.name.label("model"), P.c.name.label("project"))
            .select_from(
                HOLD.join(V, HOLD.c.version_id == V.c.id)
                .join(M, V.c.model_id == M.c.id)
                .join(P, M.c.project_id == P.c.id)
            )
            .order_by(P.c.name, M.c.name, V.c.number)
        ).all()
    return [
        {
            "version": f"{r.project}/{r.model}:{r.number}",
            "reason": r.reason,
            "by": r.created_by,
            "at": r.created_at,
        }
        for r in rows
    ]


# -- garbage collection -------------------------------------------------------------------


@dataclass
class Sweep:
    dry_run: bool
    blobs: int = 0
    bytes: int = 0
    kept_young: int = 0
    live: int = 0
    per_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "kept_young": self.kept_young,
            "live": self.live,
            "per_model": self.per_model,
        }


def roots(ctx: Context) -> set[str]:
    """Every blob that must stay (see the module's docstring)."""
    from .deployments import deployment_roots

    found: set[str] = set(deployment_roots(ctx))
    with ctx.store.read() as conn:
        # deleted and archived artifacts are not hot (the cold copy is never swept: gc only
        # ever lists the hot store)
        deleted = select(DEL.c.version_id)
        archived = select(ARC.c.version_id)
        hot = V.c.id.not_in(deleted) & V.c.id.not_in(archived)
        found.update(
            conn.execute(
                select(VB.c.digest).where(
                    (VB.c.version_id.not_in(deleted) & VB.c.version_id.not_in(archived))
                    | (VB.c.role.not_in(ARTIFACT_ROLES))
                )
            ).scalars()
        )
        live_records = select(V.c.record).where(hot)
        for (record,) in conn.execute(live_records):
            found.update(m.decode() for m in DIGEST_RE.findall(record.encode()))
        for table in schema.metadata.sorted_tables:
            if table.name in NOT_SCANNED:
                continue
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                for value in row:
                    if isinstance(value, str) and "sha256:" in value:
                        found.update(m.decode() for m in DIGEST_RE.findall(value.encode()))
    # nested digests: manifests of snapshots, evaluation outputs, ...
    pending = list(found)
    while pending:
        digest = pending.pop()
        try:
            if ctx.blobs.size(digest) > SCAN_LIMIT:
                continue
            data = ctx.blobs.read_bytes(digest, verify=False)
        except (NotFound, OSError):
            continue
        for m in DIGEST_RE.findall(data):
            nested = m.decode()
            if nested not in found:
                found.add(nested)
                pending.append(nested)
    return found


def _owners(ctx: Context) -> dict[str, str]:
    """digest -> the model whose deleted or archived artifact held it (per-model report)."""
    out: dict[str, str] = {}
    with ctx.store.read() as conn:
        for gone in (DEL, ARC):
            rows = conn.execute(
                select(VB.c.digest, M.c.name, P.c.name.label("project")).select_from(
                    VB.join(gone, gone.c.version_id == VB.c.version_id)
                    .join(V, V.c.id == VB.c.version_id)
                    .join(M, V.c.model_id == M.c.id)
                    .join(P, M.c.project_id == P.c.id)
                )
            ).all()
            out.update((r.digest, f"{r.project}/{r.name}") for r in rows)
    return out


def gc(ctx: Context, *, dry_run: bool, grace_seconds: float, only: set[str] | None = None) -> Sweep:
    """Mark and sweep the hot blob store; with *only*, sweep no blob outside that set (what
    archiving just copied to the cold tier)."""
    listing = getattr(ctx.blobs, "listing", None)
    remove = getattr(ctx.blobs, "delete", None)
    if listing is None or remove is None:
        raise InvalidInput(f"gc cannot list or delete the blobs of {ctx.blobs!r}")
    if grace_seconds < 0:
        raise InvalidInput("the grace period cannot be negative", field="grace")
    started = time.time()
    # roots first, then the listing: a blob written or reused in between is young
    keep = roots(ctx)
    blobs = listing()
    owners = _owners(ctx)
    sweep = Sweep(dry_run=dry_run)
    swept: list[str] = []
    per_model: dict[str, dict[str, int]] = defaultdict(lambda: {"blobs": 0, "bytes": 0})
    for digest, size, mtime in blobs:
        if only is not None and digest not in only:
            continue
        if digest in keep:
            sweep.live += 1
            continue
        if started - mtime < grace_seconds:
            sweep.kept_young += 1
            continue
        if not dry_run and not remove(digest):
            continue
        swept.append(digest)
        owner = owners.get(digest, "(referenced by nothing)")
        per_model[owner]["blobs"] += 1
        per_model[owner]["bytes"] += size
        sweep.blobs += 1
        sweep.bytes += size
    sweep.per_model = dict(per_model)
    if not dry_run and sweep.blobs:
        with ctx.store.write() as conn:
            up = schema.blob_uploads
            for start in range(0, len(swept), 500):  # whoever sent them must send them again
                conn.execute(delete(up).where(up.c.digest.in_(swept[start : start + 500])))
            append(
                conn,
                EventDraft("gc.sweep", "blobs", after=sweep.to_json()),
                actor=ctx.actor,
                at=ctx.now(),
            )
    return sweep
