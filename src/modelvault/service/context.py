"""What every use-case needs: the stores, the settings, the clock and the acting user, plus
the lookups shared by use-cases (project, model and version rows by name or reference)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, literal_column, or_, select

from ..audit import EventDraft, append
from ..blobs import BlobStore
from ..errors import InvalidInput, NotFound
from ..lifecycle import Stage
from ..limits import check_name
from ..refs import Ref, parse_ref
from ..settings import Settings
from ..store import schema
from ..store import statements as sql
from ..store.engine import MetadataStore
from ..timeutil import Clock, to_text

P, M, V = schema.projects, schema.models, schema.versions
S, A = schema.stage_intervals, schema.alias_intervals


@dataclass(slots=True)
class Context:
    settings: Settings
    store: MetadataStore
    blobs: BlobStore
    clock: Clock
    actor: str

    def now(self) -> datetime:
        return self.clock()

    def project_of(self, ref: Ref) -> str:
        return ref.project or self.settings.project

    def ref(self, text: str | Ref) -> Ref:
        return text if isinstance(text, Ref) else parse_ref(text)


def check_actor(actor: str) -> str:
    actor = actor.strip()
    if not actor or len(actor) > 256 or "\x00" in actor:
        raise InvalidInput("actor must be 1-256 characters", field="actor")
    return actor


def model_row(conn: Connection, project: str, model: str) -> Any:
    row = conn.execute(
        select(M.c.id, M.c.name, M.c.latest_number, M.c.created_by, M.c.created_at)
        .select_from(M.join(P, M.c.project_id == P.c.id))
        .where(P.c.name == project, M.c.name == model)
    ).first()
    if row is None:
        raise NotFound(f"model {project}/{model} does not exist", project=project, model=model)
    return row


def _open_at(table: Any, at: Any) -> Any:
    if at is None:
        return table.c.valid_to.is_(None)
    return and_(table.c.valid_from <= at, or_(table.c.valid_to.is_(None), table.c.valid_to > at))


def base_version_select(at: Any = None) -> Select[Any]:
    """Version rows with their model, project and the stage they held (now, or at *at*, a
    time text or a bind parameter)."""
    stage_now = S.alias("stage_now")
    return select(
        V.c.id,
        V.c.model_id,
        V.c.number,
        V.c.label,
        V.c.kind,
        V.c.digest,
        V.c.artifact_digest,
        V.c.size,
        V.c.file_count,
        V.c.record,
        V.c.created_by,
        V.c.created_at,
        M.c.name.label("model_name"),
        P.c.name.label("project_name"),
        stage_now.c.stage,
    ).select_from(
        V.join(M, V.c.model_id == M.c.id)
        .join(P, M.c.project_id == P.c.id)
        .outerjoin(stage_now, and_(stage_now.c.version_id == V.c.id, _open_at(stage_now, at)))
    )


@functools.cache
def _version_statement(selector: str, timed: bool, stage: str | None = None) -> Select[Any]:
    """The resolving SELECT for one shape of reference, built once; values are bound.

    The stage is written as a literal (one statement per stage): bound, it would make SQLite
    re-plan the statement on every call, since a partial index depends on its value."""
    at: Any = bindparam("at") if timed else None
    query = base_version_select(at).where(
        P.c.name == bindparam("project"), M.c.name == bindparam("model")
    )
    if timed:
        query = query.where(V.c.created_at <= bindparam("at"))
    if selector == "number":
        return query.where(V.c.number == bindparam("value"))
    if selector == "label":
        return query.where(V.c.label == bindparam("value"))
    if selector == "stage":
        held = S.alias("held")
        return query.join(
            held,
            and_(
                held.c.model_id == M.c.id,
                held.c.version_id == V.c.id,
                held.c.stage == literal_column(f"'{Stage(stage or '').value}'"),
                _open_at(held, at),
            ),
        ).order_by(V.c.number.desc())
    if selector == "alias":
        return query.join(
            A,
            and_(
                A.c.model_id == M.c.id,
                A.c.version_id == V.c.id,
                A.c.name == bindparam("value"),
                _open_at(A, at),
            ),
        )
    return query.order_by(V.c.number.desc()).limit(1)


def version_query(
    ref: Ref, project: str, at: datetime | None
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement and parameters resolving *ref* to its version row and stage (then)."""
    for selector in ("number", "label", "stage", "alias"):
        value = getattr(ref, selector)
        if value is not None:
            break
    else:
        selector, value = "latest", None
    params: dict[str, Any] = {"project": project, "model": ref.model, "value": value}
    if at is not None:
        params["at"] = to_text(at)
    stage = value if selector == "stage" else None
    return _version_statement(selector, at is not None, stage), params


def version_row(conn: Connection, ctx: Context, ref: Ref, at: datetime | None = None) -> Any:
    project = ctx.project_of(ref)
    statement, params = version_query(ref, project, at)
    row = conn.execute(statement, params).first()
    if row is None:
        model_row(conn, project, ref.model)  # raises NotFound for a missing model
        when = f" at {to_text(at)}" if at is not None else ""
        raise NotFound(f"{project}/{ref} does not exist{when}", project=project, ref=str(ref))
    return row


def ensure_project(conn: Connection, ctx: Context, project: str, at: datetime) -> int:
    """The id of *project*, created (and audited) on first use."""
    project_id = conn.execute(sql.PROJECT_ID, {"project": project}).scalar()
    if project_id is None:
        project_id = conn.execute(
            sql.INSERT_PROJECT,
            {"name": project, "created_by": ctx.actor, "created_at": to_text(at)},
        ).scalar_one()
        append(
            conn,
            EventDraft("project.create", project, project=project, after={"project": project}),
            actor=ctx.actor,
            at=at,
        )
    return int(project_id)


def resolve_model(ctx: Context, text: str) -> tuple[str, str]:
    """A model named alone or as PROJECT/MODEL."""
    project, _, name = text.rpartition("/")
    return (
        check_name(project, what="project name") if project else ctx.settings.project,
        check_name(name),
    )
