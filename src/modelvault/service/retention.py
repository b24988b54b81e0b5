"""Applying the retention policy file (docs/gc.md): which artifacts stay hot, which are
deleted, and, when a cold tier is configured, which move there instead of being deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from ..errors import InvalidInput
from ..lifecycle import Stage
from ..retention import RetentionPolicy, Rules, load_retention
from ..store import schema
from ..timeutil import from_text
from .coldtier import archive, cold_store
from .context import Context, version_row
from .gc import delete_in, gc, guards, hot_reason, protection, subject

V, M, P = schema.versions, schema.models, schema.projects
S, DEL, ARC = schema.stage_intervals, schema.artifact_deletions, schema.archives
# hot copies of archived blobs younger than this wait for `gc` (a registration in flight may
# be reusing them), as in gc's default
ARCHIVE_GRACE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Candidate:
    ref: str
    why: str
    dropped: bool  # the policy does not keep it (else: only old enough to archive)


def apply_retention(ctx: Context, *, dry_run: bool) -> list[dict[str, Any]]:
    """Delete the artifacts the retention policy does not keep or, with a cold tier, move
    them (and those older than ``archive_after_days``) there; one line per version."""
    policy = load_retention(Path(ctx.settings.retention))
    cold = cold_store(ctx)
    if cold is None and policy.archives:
        raise InvalidInput(
            "retention: archive_after_days needs a cold tier; set MODELVAULT_COLD_BLOBS "
            "(docs/gc.md)"
        )
    guard = guards(ctx, policy)
    with ctx.store.read() as conn:
        candidates = _candidates(conn, ctx, policy, archiving=cold is not None)
    out: list[dict[str, Any]] = []
    if cold is None:
        for c in candidates:
            with ctx.store.write() as conn:
                row = version_row(conn, ctx, ctx.ref(c.ref))
                blocked = protection(conn, ctx, row, guard)
                if blocked:
                    out.append({"version": subject(row), "action": "kept", "why": blocked})
                elif dry_run:
                    out.append({"version": subject(row), "action": "would delete", "why": c.why})
                else:
                    delete_in(conn, ctx, row, f"retention policy: {c.why}", guard)
                    out.append({"version": subject(row), "action": "deleted", "why": c.why})
        return out
    # with a cold tier nothing is deleted: held and in-window versions move there too (their
    # bytes are kept, only elsewhere); what must be served stays hot
    moved: set[str] = set()
    for c in candidates:
        with ctx.store.read() as conn:
            row = version_row(conn, ctx, ctx.ref(c.ref))
            blocked = hot_reason(conn, row, guard)
        if blocked:
            if c.dropped:
                out.append({"version": subject(row), "action": "kept", "why": blocked})
        elif dry_run:
            out.append({"version": subject(row), "action": "would archive", "why": c.why})
        else:
            line, digests = archive(ctx, cold, c.ref, f"retention policy: {c.why}", guard)
            out.append({**line, "why": c.why} if line["action"] == "archived" else line)
            moved.update(digests)
    if moved and hasattr(ctx.blobs, "listing"):
        gc(ctx, dry_run=False, grace_seconds=ARCHIVE_GRACE_SECONDS, only=moved)
    return out


def _candidates(
    conn: Connection, ctx: Context, policy: RetentionPolicy, *, archiving: bool
) -> list[Candidate]:
    now = ctx.now()
    models = conn.execute(
        select(M.c.id, M.c.name, P.c.name.label("project"))
        .select_from(M.join(P, M.c.project_id == P.c.id))
        .order_by(P.c.name, M.c.name)
    ).all()
    gone = set(conn.execute(select(DEL.c.version_id)).scalars())
    gone.update(conn.execute(select(ARC.c.version_id)).scalars())
    out: list[Candidate] = []
    for model in models:
        rules = policy.for_model(model.project, model.name)
        if rules.empty:
            continue
        versions = conn.execute(
            select(V.c.id, V.c.number, V.c.created_at)
            .where(V.c.model_id == model.id)
            .order_by(V.c.number.desc())
        ).all()
        if rules.keep_last is None:
            keep = {v.id for v in versions}
        else:
            keep = {v.id for v in versions[: rules.keep_last]}
        top = _top(conn, model.id, rules)
        promoted = set(
            conn.execute(
                select(S.c.version_id).where(
                    S.c.model_id == model.id,
                    S.c.stage.in_((Stage.STAGING.value, Stage.PRODUCTION.value)),
                )
            ).scalars()
        )
        for v in versions:
            if v.id in gone:
                continue
            ref = f"{model.project}/{model.name}:{v.number}"
            age = now - from_text(v.created_at)
            expired = (
                rules.candidate_ttl_days is not None
                and v.id not in promoted
                and age > timedelta(days=rules.candidate_ttl_days)
            )
            if v.id not in top and (v.id not in keep or expired):
                why = (
                    "a candidate past its TTL"
                    if expired
                    else f"older than the last {rules.keep_last}"
                )
                out.append(Candidate(ref, why, dropped=True))
            elif (
                archiving
                and rules.archive_after_days is not None
                and age > timedelta(days=rules.archive_after_days)
            ):
                why = f"older than {rules.archive_after_days:g} days"
                out.append(Candidate(ref, why, dropped=False))
    return out


def _top(conn: Connection, model_id: int, rules: Rules) -> set[int]:
    if not rules.keep_top_metric:
        return set()
    VM = schema.version_metrics
    return set(
        conn.execute(
            select(VM.c.version_id)
            .join(V, V.c.id == VM.c.version_id)
            .where(V.c.model_id == model_id, VM.c.key == rules.keep_top_metric)
            .order_by(VM.c.value.desc())
            .limit(rules.keep_top_k)
        ).scalars()
    )
