"""Aliases: named pointers to versions of one model, moved with compare-and-set.

Each assignment is an interval row; moving an alias closes the old interval and opens a new
one, so the whole history is kept and ``MODEL@alias --at T`` is a query.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update

from ..audit import EventDraft, append
from ..domain import AliasInterval
from ..errors import Conflict, NotFound
from ..lifecycle import Stage
from ..limits import check_alias
from ..store import schema
from ..timeutil import from_text, to_text
from .context import Context, model_row, resolve_model, version_row

A, V = schema.alias_intervals, schema.versions
Expect = int | Literal["none"] | None


def _current(conn: Connection, model_id: int, alias: str) -> tuple[int, int] | None:
    row = conn.execute(
        select(A.c.id, V.c.number)
        .select_from(A.join(V, A.c.version_id == V.c.id))
        .where(A.c.model_id == model_id, A.c.name == alias, A.c.valid_to.is_(None))
    ).first()
    return (row.id, row.number) if row else None


def _check_expect(expect: Expect, current: int | None, model: str, alias: str) -> None:
    if expect is None:
        return
    wanted = None if expect == "none" else expect
    if wanted != current:
        shown = "unset" if current is None else f"version {current}"
        want = "unset" if wanted is None else f"version {wanted}"
        raise Conflict(
            f"alias {model}@{alias} is {shown}, not {want}: someone moved it; re-read and retry",
            model=model,
            alias=alias,
            current=current,
            expected=wanted,
        )


def set_alias(
    ctx: Context, model: str, alias: str, ref: str, expect: Expect = None
) -> AliasInterval:
    project, name = resolve_model(ctx, model)
    check_alias(alias)
    target_ref = ctx.ref(ref if (":" in ref or "@" in ref) else f"{name}:{ref}")
    if target_ref.model != name or (target_ref.project or project) != project:
        raise Conflict(
            f"alias {name}@{alias} can only point at versions of {name}", model=name, alias=alias
        )
    with ctx.store.write() as conn:
        at = ctx.now()  # under the write lock, so time order is commit order
        mrow = model_row(conn, project, name)
        vrow = version_row(conn, ctx, replace(target_ref, project=project))
        if vrow.stage == Stage.RETIRED.value:
            raise Conflict(
                f"{name}:{vrow.number} is retired; an alias cannot point at it",
                model=name,
                version=vrow.number,
            )
        current = _current(conn, mrow.id, alias)
        _check_expect(expect, current[1] if current else None, name, alias)
        if current is not None and current[1] == vrow.number:
            since = conn.execute(select(A).where(A.c.id == current[0])).one()
            return _interval(project, name, alias, vrow.number, since)
        event = append(
            conn,
            EventDraft(
                "alias.set",
                f"{project}/{name}@{alias}",
                project=project,
                model=name,
                before={"alias": alias, "version": current[1] if current else None},
                after={"alias": alias, "version": vrow.number},
            ),
            actor=ctx.actor,
            at=at,
        )
        if current is not None:
            conn.execute(
                update(A)
                .where(A.c.id == current[0], A.c.valid_to.is_(None))
                .values(valid_to=to_text(at), removed_by=ctx.actor)
            )
        conn.execute(
            insert(A).values(
                model_id=mrow.id,
                name=alias,
                version_id=vrow.id,
                valid_from=to_text(at),
                set_by=ctx.actor,
                audit_seq=event.seq,
            )
        )
    return AliasInterval(
        project=project,
        model=name,
        alias=alias,
        version=vrow.number,
        valid_from=at,
        valid_to=None,
        set_by=ctx.actor,
    )


def remove_alias(ctx: Context, model: str, alias: str, expect: Expect = None) -> AliasInterval:
    project, name = resolve_model(ctx, model)
    check_alias(alias)
    with ctx.store.write() as conn:
        at = ctx.now()  # under the write lock, so time order is commit order
        mrow = model_row(conn, project, name)
        current = _current(conn, mrow.id, alias)
        if current is None:
            raise NotFound(f"alias {name}@{alias} is not set", model=name, alias=alias)
        _check_expect(expect, current[1], name, alias)
        append(
            conn,
            EventDraft(
                "alias.remove",
                f"{project}/{name}@{alias}",
                project=project,
                model=name,
                before={"alias": alias, "version": current[1]},
                after={"alias": alias, "version": None},
            ),
            actor=ctx.actor,
            at=at,
        )
        conn.execute(
            update(A)
            .where(A.c.id == current[0], A.c.valid_to.is_(None))
            .values(valid_to=to_text(at), removed_by=ctx.actor)
        )
        row = conn.execute(select(A).where(A.c.id == current[0])).one()
    return _interval(project, name, alias, current[1], row)


def _interval(project: str, model: str, alias: str, number: int, row: Any) -> AliasInterval:
    return AliasInterval(
        project=project,
        model=model,
        alias=alias,
        version=number,
        valid_from=from_text(row.valid_from),
        valid_to=from_text(row.valid_to) if row.valid_to else None,
        set_by=row.set_by,
        removed_by=row.removed_by,
    )


def alias_history(ctx: Context, model: str, alias: str | None = None) -> list[AliasInterval]:
    project, name = resolve_model(ctx, model)
    with ctx.store.read() as conn:
        mrow = model_row(conn, project, name)
        query = (
            select(A, V.c.number)
            .select_from(A.join(V, A.c.version_id == V.c.id))
            .where(A.c.model_id == mrow.id)
            .order_by(A.c.audit_seq, A.c.id)
        )
        if alias is not None:
            query = query.where(A.c.name == check_alias(alias))
        rows = conn.execute(query).all()
    return [_interval(project, name, r.name, r.number, r) for r in rows]
