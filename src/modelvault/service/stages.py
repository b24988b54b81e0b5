"""Lifecycle use-cases: approve, promote, rollback, and the stage history of a model.

Each runs in one write transaction: the interval rows close and open together with the audit
event, and the database's partial unique index refuses a second production version.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ..audit import EventDraft, append
from ..domain import Approval, StageInterval, Transition
from ..errors import AlreadyExists, Conflict, Forbidden, GateFailed, InvalidInput
from ..lifecycle import Stage, check_transition, parse_stage
from ..limits import check_text
from ..refs import Ref
from ..store import schema
from ..timeutil import from_text, to_text
from ..tracking.records import GateCheck, GateReport
from . import gating
from .context import Context, model_row, resolve_model, version_row

S, V, AP = schema.stage_intervals, schema.versions, schema.approvals


def _require_reason(reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidInput(f"a reason is required for {what} (--reason)", field="reason")
    check_text(text, limit="reason_chars", what="reason")
    return text


def _open_interval(conn: Connection, version_id: int) -> Any:
    return conn.execute(
        select(S.c.id, S.c.stage).where(S.c.version_id == version_id, S.c.valid_to.is_(None))
    ).one()


def _close(conn: Connection, interval_id: int, at: str, actor: str, why: str) -> None:
    conn.execute(
        update(S)
        .where(S.c.id == interval_id, S.c.valid_to.is_(None))
        .values(valid_to=at, ended_by=actor, end_reason=why)
    )


def _open(
    conn: Connection,
    *,
    model_id: int,
    version_id: int,
    stage: Stage,
    at: str,
    actor: str,
    reason: str | None,
    seq: int,
) -> None:
    conn.execute(
        insert(S).values(
            model_id=model_id,
            version_id=version_id,
            stage=stage.value,
            valid_from=at,
            set_by=actor,
            reason=reason,
            audit_seq=seq,
        )
    )


def _current_production(conn: Connection, model_id: int) -> Any:
    return conn.execute(
        select(S.c.id, S.c.version_id, V.c.number)
        .select_from(S.join(V, S.c.version_id == V.c.id))
        .where(
            S.c.model_id == model_id, S.c.stage == Stage.PRODUCTION.value, S.c.valid_to.is_(None)
        )
    ).first()


def approve(ctx: Context, ref: str, comment: str | None = None) -> Approval:
    check_text(comment, limit="comment_chars", what="comment")
    parsed = ctx.ref(ref)
    with ctx.store.write() as conn:
        at = ctx.now()  # under the write lock, so time order is commit order
        row = version_row(conn, ctx, parsed)
        subject = f"{row.project_name}/{row.model_name}:{row.number}"
        if row.created_by == ctx.actor:
            raise Forbidden(
                f"{ctx.actor} created {row.model_name}:{row.number} and cannot approve it; "
                "another person must",
                model=row.model_name,
                version=row.number,
                actor=ctx.actor,
            )
        if row.stage == Stage.RETIRED.value:
            raise Conflict(
                f"{row.model_name}:{row.number} is retired",
                model=row.model_name,
                version=row.number,
            )
        exists = conn.execute(
            select(AP.c.id).where(AP.c.version_id == row.id, AP.c.approver == ctx.actor)
        ).first()
        if exists is not None:
            raise AlreadyExists(
                f"{ctx.actor} already approved {row.model_name}:{row.number}",
                model=row.model_name,
                version=row.number,
            )
        event = append(
            conn,
            EventDraft(
                "version.approve",
                subject,
                project=row.project_name,
                model=row.model_name,
                after={"version": row.number, "approver": ctx.actor, "comment": comment},
                reason=comment,
            ),
            actor=ctx.actor,
            at=at,
        )
        conn.execute(
            insert(AP).values(
                version_id=row.id,
                approver=ctx.actor,
                comment=comment,
                created_at=to_text(at),
                audit_seq=event.seq,
            )
        )
    return Approval(
        project=row.project_name,
        model=row.model_name,
        version=row.number,
        approver=ctx.actor,
        created_at=at,
        comment=comment,
    )


def _refuse_or_override(
    conn: Connection,
    ctx: Context,
    row: Any,
    report: GateReport,
    failed: list[GateCheck],
    override: bool,
    reason: str | None,
    at: datetime,
) -> None:
    """Raise GateFailed with the rule table, unless an admin overrides the failed rules.

    Approvals are a human gate and are never overridden."""
    version = f"{row.model_name}:{row.number}"
    rules = [asdict(c) for c in report.checks]
    human = [c for c in failed if c.rule.startswith("approvals")]
    if not override or human:
        listed = "; ".join(f"{c.rule} (actual {c.actual})" for c in failed)
        raise GateFailed(
            f"{version} cannot enter {report.stage}, failed: {listed}"
            + ("; approvals cannot be overridden" if override and human else ""),
            model=row.model_name,
            version=row.number,
            stage=report.stage,
            rules=rules,
        )
    admins = gating.policy_for(ctx, row.project_name, row.model_name).admins
    if ctx.actor not in admins:
        raise Forbidden(
            f"{ctx.actor} is not an admin of project {row.project_name} and cannot override "
            "its gates (policy: admins)",
            actor=ctx.actor,
            project=row.project_name,
        )
    _require_reason(reason, "a gate override")
    append(
        conn,
        EventDraft(
            "gate.override",
            f"{row.project_name}/{row.model_name}:{row.number}",
            project=row.project_name,
            model=row.model_name,
            before={"stage": row.stage, "failed": [asdict(c) for c in failed]},
            after={"stage": report.stage, "version": row.number},
            reason=reason,
        ),
        actor=ctx.actor,
        at=at,
    )


def promote(
    ctx: Context, ref: str, to: str, reason: str | None = None, *, override: bool = False
) -> Transition:
    target = parse_stage(to)
    if target is Stage.PRODUCTION or override:
        reason = _require_reason(
            reason, "a promotion to production" if not override else "a gate override"
        )
    else:
        reason = (
            check_text(reason.strip() if reason else None, limit="reason_chars", what="reason")
            or None
        )
    parsed = ctx.ref(ref)
    with ctx.store.write() as conn:
        return promote_in(conn, ctx, parsed, target, reason, override)


def promote_in(
    conn: Connection,
    ctx: Context,
    parsed: Ref,
    target: Stage,
    reason: str | None,
    override: bool,
) -> Transition:
    """Promote inside the caller's unit of work (a completing rollout also uses it)."""
    at = ctx.now()  # under the write lock, so time order is commit order
    at_text = to_text(at)
    row = version_row(conn, ctx, parsed)
    current = Stage(row.stage)
    check_transition(current, target, model=row.model_name, version=row.number)
    replaced = None
    report = gating.evaluate(conn, ctx, row, target)
    failed = [c for c in report.checks if not c.passed]
    if failed:
        _refuse_or_override(conn, ctx, row, report, failed, override, reason, at)
    if target is Stage.PRODUCTION:
        replaced = _current_production(conn, row.model_id)
    event = append(
        conn,
        EventDraft(
            "stage.promote",
            f"{row.project_name}/{row.model_name}:{row.number}",
            project=row.project_name,
            model=row.model_name,
            before={
                "version": row.number,
                "stage": current.value,
                "production": replaced.number if replaced else None,
            },
            after={
                "version": row.number,
                "stage": target.value,
                "archived": replaced.number if replaced else None,
                # the numbers behind the decision, so a report can cite them later
                "gates": [
                    {"rule": c.rule, "required": c.required, "actual": c.actual, "passed": c.passed}
                    for c in report.checks
                ],
                "eval_set": report.eval_set,
            },
            reason=reason,
        ),
        actor=ctx.actor,
        at=at,
    )
    if replaced is not None:
        _close(conn, replaced.id, at_text, ctx.actor, "replaced")
        _open(
            conn,
            model_id=row.model_id,
            version_id=replaced.version_id,
            stage=Stage.ARCHIVED,
            at=at_text,
            actor=ctx.actor,
            reason=f"replaced by {row.model_name}:{row.number}",
            seq=event.seq,
        )
    _close(conn, _open_interval(conn, row.id).id, at_text, ctx.actor, "promotion")
    _open(
        conn,
        model_id=row.model_id,
        version_id=row.id,
        stage=target,
        at=at_text,
        actor=ctx.actor,
        reason=reason,
        seq=event.seq,
    )
    return Transition(
        project=row.project_name,
        model=row.model_name,
        version=row.number,
        from_stage=current.value,
        to_stage=target.value,
        actor=ctx.actor,
        at=at,
        audit_seq=event.seq,
        reason=reason,
        replaced=replaced.number if replaced else None,
    )


def _rollback_candidates(conn: Connection, model_id: int, current_version: int | None) -> list[Any]:
    """Versions that held production before, newest first, excluding those rolled back."""
    ended = conn.execute(
        select(S.c.version_id, S.c.valid_to, S.c.end_reason, V.c.number)
        .select_from(S.join(V, S.c.version_id == V.c.id))
        .where(
            S.c.model_id == model_id, S.c.stage == Stage.PRODUCTION.value, S.c.valid_to.is_not(None)
        )
        .order_by(S.c.valid_to.desc(), S.c.id.desc())
    ).all()
    seen: set[int] = set()
    out = []
    for r in ended:
        if r.version_id in seen:
            continue
        seen.add(r.version_id)
        if r.version_id != current_version and r.end_reason != "rollback":
            out.append(r)
    return out


def rollback(ctx: Context, model: str, reason: str | None, to: int | None = None) -> Transition:
    reason = _require_reason(reason, "a rollback")
    project, name = resolve_model(ctx, model)
    with ctx.store.write() as conn:
        return rollback_in(conn, ctx, project, name, reason, to)


def rollback_in(
    conn: Connection, ctx: Context, project: str, name: str, reason: str, to: int | None
) -> Transition:
    """Roll back inside the caller's unit of work (a deployment rollback also uses it)."""
    at = ctx.now()  # under the write lock, so time order is commit order
    at_text = to_text(at)
    mrow = model_row(conn, project, name)
    current = _current_production(conn, mrow.id)
    candidates = _rollback_candidates(conn, mrow.id, current.version_id if current else None)
    if to is not None:
        chosen = next((c for c in candidates if c.number == to), None)
        if chosen is None:
            was = conn.execute(
                select(S.c.id)
                .select_from(S.join(V, S.c.version_id == V.c.id))
                .where(
                    S.c.model_id == mrow.id,
                    V.c.number == to,
                    S.c.stage == Stage.PRODUCTION.value,
                )
            ).first()
            why = (
                "is in production now"
                if current and current.number == to
                else "was rolled back before"
                if was
                else "was never in production"
            )
            raise Conflict(
                f"cannot roll {project}/{name} back to version {to}: it {why}",
                model=name,
                version=to,
            )
    else:
        if not candidates:
            raise Conflict(
                f"{project}/{name} has no previous production version to roll back to",
                model=name,
            )
        chosen = candidates[0]
    row = conn.execute(
        select(V.c.id, V.c.model_id, V.c.number).where(V.c.id == chosen.version_id)
    ).one()
    open_row = _open_interval(conn, row.id)
    if open_row.stage == Stage.RETIRED.value:
        raise Conflict(
            f"{name}:{row.number} is retired and cannot return to production",
            model=name,
            version=row.number,
        )
    event = append(
        conn,
        EventDraft(
            "stage.rollback",
            f"{project}/{name}",
            project=project,
            model=name,
            before={"production": current.number if current else None},
            after={
                "production": row.number,
                "archived": current.number if current else None,
                "restored_from": open_row.stage,
            },
            reason=reason,
        ),
        actor=ctx.actor,
        at=at,
    )
    if current is not None:
        _close(conn, current.id, at_text, ctx.actor, "rollback")
        _open(
            conn,
            model_id=mrow.id,
            version_id=current.version_id,
            stage=Stage.ARCHIVED,
            at=at_text,
            actor=ctx.actor,
            reason=f"rolled back: {reason}",
            seq=event.seq,
        )
    _close(conn, open_row.id, at_text, ctx.actor, "rollback-restore")
    _open(
        conn,
        model_id=mrow.id,
        version_id=row.id,
        stage=Stage.PRODUCTION,
        at=at_text,
        actor=ctx.actor,
        reason=reason,
        seq=event.seq,
    )
    return Transition(
        project=project,
        model=name,
        version=row.number,
        from_stage=open_row.stage,
        to_stage=Stage.PRODUCTION.value,
        actor=ctx.actor,
        at=at,
        audit_seq=event.seq,
        reason=reason,
        replaced=current.number if current else None,
    )


def stage_history(ctx: Context, model: str) -> list[StageInterval]:
    project, name = resolve_model(ctx, model)
    with ctx.store.read() as conn:
        mrow = model_row(conn, project, name)
        rows = conn.execute(
            select(S, V.c.number)
            .select_from(S.join(V, S.c.version_id == V.c.id))
            .where(S.c.model_id == mrow.id)
            .order_by(S.c.audit_seq, S.c.id)
        ).all()
    return [
        StageInterval(
            project=project,
            model=name,
            version=r.number,
            stage=r.stage,
            valid_from=from_text(r.valid_from),
            valid_to=from_text(r.valid_to) if r.valid_to else None,
            set_by=r.set_by,
            reason=r.reason,
            ended_by=r.ended_by,
            end_reason=r.end_reason,
        )
        for r in rows
    ]


def approvals(ctx: Context, ref: str) -> list[Approval]:
    parsed = ctx.ref(ref)
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, parsed)
        rows = conn.execute(select(AP).where(AP.c.version_id == row.id).order_by(AP.c.id)).all()
    return [
        Approval(
            project=row.project_name,
            model=row.model_name,
            version=row.number,
            approver=r.approver,
            created_at=from_text(r.created_at),
            comment=r.comment,
        )
        for r in rows
    ]
