"""What every use-case needs: the stores, the settings, the clock and the acting user, plus
the lookups shared by use-cases (project, model and version rows by name or reference)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, or_, select

from ..blobs import BlobStore
from ..errors import InvalidInput, NotFound
from ..limits import check_name
from ..refs import Ref, parse_ref
from ..settings import Settings
from ..store import schema
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


def _open_at(table: Any, at: str | None) -> Any:
    if at is None:
        return table.c.valid_to.is_(None)
    return and_(table.c.valid_from <= at, or_(table.c.valid_to.is_(None), table.c.valid_to > at))


def base_version_select(at_text: str | None = None) -> Select[Any]:
    """Version rows with their model, project and the stage they held (now, or at a time)."""
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
        .outerjoin(
            stage_now, and_(stage_now.c.version_id == V.c.id, _open_at(stage_now, at_text))
        )
    )


def version_query(ref: Ref, project: str, at: datetime | None) -> Select[Any]:
    """One SELECT resolving a reference to its version row and the stage it held (then)."""
    at_text = to_text(at) if at is not None else None
    query = base_version_select(at_text).where(P.c.name == project, M.c.name == ref.model)
    if at_text is not None:
        query = query.where(V.c.created_at <= at_text)
    if ref.number is not None:
        return query.where(V.c.number == ref.number)
    if ref.label is not None:
        return query.where(V.c.label == ref.label)
    if ref.stage is not None:
        held = S.alias("held")
        return query.join(
            held,
            and_(held.c.version_id == V.c.id, held.c.stage == ref.stage, _open_at(held, at_text)),
        ).order_by(V.c.number.desc())
    if ref.alias is not None:
        return query.join(
            A, and_(A.c.version_id == V.c.id, A.c.name == ref.alias, _open_at(A, at_text))
        )
    return query.order_by(V.c.number.desc()).limit(1)


def version_row(conn: Connection, ctx: Context, ref: Ref, at: datetime | None = None) -> Any:
    project = ctx.project_of(ref)
    row = conn.execute(version_query(ref, project, at)).first()
    if row is None:
        model_row(conn, project, ref.model)  # raises NotFound for a missing model
        when = f" at {to_text(at)}" if at is not None else ""
        raise NotFound(f"{project}/{ref} does not exist{when}", project=project, ref=str(ref))
    return row


def resolve_model(ctx: Context, text: str) -> tuple[str, str]:
    """A model named alone or as PROJECT/MODEL."""
    project, _, name = text.rpartition("/")
    return (check_name(project, what="project name") if project else ctx.settings.project,
            check_name(name))
