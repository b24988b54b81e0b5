"""Audit queries: list events by model, actor, action and time, and verify the chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..audit import row_to_event, verify
from ..domain import AuditEvent, AuditVerification
from ..limits import check_name, check_text
from ..store import schema
from ..timeutil import to_text
from .context import Context, check_actor, resolve_model

E = schema.audit_events


def list_events(
    ctx: Context,
    *,
    model: str | None = None,
    project: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_seq: int = 0,
    limit: int | None = 1000,
    newest_first: bool = False,
) -> list[AuditEvent]:
    query = select(E)
    if model is not None:
        proj, name = resolve_model(ctx, model)
        query = query.where(E.c.project == proj, E.c.model == name)
    elif project is not None:
        query = query.where(E.c.project == check_name(project, what="project name"))
    if actor is not None:
        query = query.where(E.c.actor == check_actor(actor))
    if action is not None:
        check_text(action, limit="reference_chars", what="action")
        query = query.where(
            E.c.action.like(action.replace("*", "%")) if "*" in action else E.c.action == action
        )
    if since is not None:
        query = query.where(E.c.ts >= to_text(since))
    if until is not None:
        query = query.where(E.c.ts < to_text(until))
    order: Any = E.c.seq
    narrowed = model is not None or project is not None or actor is not None or action
    timed = since is not None or until is not None
    if timed and not narrowed and ctx.store.dialect == "sqlite":
        # only a time range: read it from the time index and sort what it holds, rather than
        # walk the whole log in sequence order, which SQLite's planner prefers; `seq + 0` is
        # SQLite's documented way to keep the planner off an index
        order = E.c.seq + 0
    query = query.where(order > after_seq)
    query = query.order_by(order.desc() if newest_first else order)
    if limit is not None:
        query = query.limit(limit)
    with ctx.store.read() as conn:
        rows = conn.execute(query).all()
    return [row_to_event(r) for r in rows]


def verify_chain(ctx: Context) -> AuditVerification:
    with ctx.store.read() as conn:
        return verify(conn)
