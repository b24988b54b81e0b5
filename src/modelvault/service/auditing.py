"""Audit queries: list events by model, actor, action and time, verify the chain, and erase
an actor's personal data (their clear name) from the events that commit to it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from ..audit import (
    ERASE_ACTION,
    EventDraft,
    append,
    events_select,
    row_to_event,
    seq_ranges,
    verify,
)
from ..domain import AuditEvent, AuditVerification
from ..errors import InvalidInput, NotFound
from ..eventhash import CLEAR, new_commitment
from ..limits import check_name, check_text
from ..store import schema
from ..timeutil import to_text
from .context import Context, check_actor, resolve_model

E, AP = schema.audit_events, schema.audit_personal


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
    as_hashed: bool = False,
) -> list[AuditEvent]:
    """Events matching every filter given; *as_hashed* keeps payloads exactly as hashed (the
    actor marks of new events left in place), for the offline bundle."""
    query = events_select()
    if model is not None:
        proj, model_name = resolve_model(ctx, model)
        query = query.where(E.c.project == proj, E.c.model == model_name)
    elif project is not None:
        query = query.where(E.c.project == check_name(project, what="project name"))
    who = check_actor(actor) if actor is not None else None
    if action is not None:
        check_text(action, limit="reference_chars", what="action")
        query = query.where(
            E.c.action.like(action.replace("*", "%")) if "*" in action else E.c.action == action
        )
    if since is not None:
        query = query.where(E.c.ts >= to_text(since))
    if until is not None:
        query = query.where(E.c.ts < to_text(until))

    def page(q: Any, key: Any) -> Any:
        q = q.where(key > after_seq).order_by(key.desc() if newest_first else key)
        return q.limit(limit) if limit is not None else q

    rows: Sequence[Any]
    with ctx.store.read() as conn:
        if who is not None:
            # events from before pseudonymization name the actor in clear, later ones through
            # their personal row (none once erased): each read in sequence order from its own
            # (actor, seq) index, so a page costs the same at ten million events as at ten
            by_name = (E.c.actor == who, E.c.scheme == CLEAR)
            clear: Sequence[Any] = []
            # asked first on the actor index alone: with other filters SQLite would rather
            # walk the action or time index and test the name on every row found there,
            # millions at scale, for a name that usually has no clear-name event at all
            if conn.execute(select(E.c.seq).where(*by_name).limit(1)).first() is not None:
                clear = conn.execute(page(query.where(*by_name), E.c.seq)).all()
            personal = conn.execute(page(query.where(AP.c.actor == who), AP.c.seq)).all()
            rows = sorted([*clear, *personal], key=lambda r: r.seq, reverse=newest_first)
            rows = rows[:limit] if limit is not None else rows
        else:
            order: Any = E.c.seq
            narrowed = model is not None or project is not None or action
            timed = since is not None or until is not None
            if timed and not narrowed and ctx.store.dialect == "sqlite":
                # only a time range: read it from the time index and sort what it holds,
                # rather than walk the whole log in sequence order, which SQLite's planner
                # prefers; `seq + 0` is SQLite's documented way to keep it off an index
                order = E.c.seq + 0
            rows = conn.execute(page(query, order)).all()
    return [row_to_event(r, as_hashed=as_hashed) for r in rows]


def verify_chain(ctx: Context) -> AuditVerification:
    with ctx.store.read() as conn:
        return verify(conn)


def erase_actor(ctx: Context, actor: str, reason: str | None) -> dict[str, Any]:
    """Delete the clear name and salts of every event *actor* did; their hashes stay valid
    (they cover commitments). Recorded as one ``audit.erase`` event by the operator, which
    lists the events and a fresh commitment to the name, never the name itself."""
    name = check_actor(actor)
    why = check_text(reason, limit="reason_chars", what="reason")
    if not why:
        raise InvalidInput("erasing personal data needs --reason", field="reason")
    with ctx.store.write() as conn:
        seqs = list(conn.execute(select(AP.c.seq).where(AP.c.actor == name)).scalars())
        clear = conn.execute(
            select(func.count()).select_from(E).where(E.c.actor == name, E.c.scheme == CLEAR)
        ).scalar_one()
        if not seqs:
            raise NotFound(
                f"no audit event names {name!r} in an erasable form"
                + (f" ({clear} from before pseudonymization name it in clear)" if clear else ""),
                field="actor",
            )
        conn.execute(delete(AP).where(AP.c.actor == name))
        salt, commitment = new_commitment(name)
        event = append(
            conn,
            EventDraft(
                ERASE_ACTION,
                f"actor:{commitment[:16]}",
                after={
                    "events": len(seqs),
                    "seqs": seq_ranges(seqs),
                    "actor_commitment": commitment,
                    "kept_in_clear": clear,
                },
                reason=why,
            ),
            actor=ctx.actor,
            at=ctx.now(),
        )
    return {
        "events": len(seqs),
        "kept_in_clear": clear,
        "actor_commitment": commitment,
        # not stored anywhere: with it, whoever asked for the erasure can show which name
        # the commitment in the erase event stands for
        "receipt_salt": salt,
        "audit_seq": event.seq,
    }
