"""Environments: the built-in development, staging and production of every project, and
those a project adds (each addition audited)."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from ..audit import EventDraft, append
from ..deploy.records import DEFAULT_ENVIRONMENTS, Environment
from ..errors import AlreadyExists, NotFound
from ..limits import check_name
from ..store import schema
from ..timeutil import from_text, to_text
from .context import Context, ensure_project

P, E = schema.projects, schema.environments


def _project_id(conn: Connection, project: str) -> int | None:
    return conn.execute(select(P.c.id).where(P.c.name == project)).scalar()


def check_environment(conn: Connection, project: str, name: str) -> str:
    name = check_name(name, what="environment name")
    if name in DEFAULT_ENVIRONMENTS:
        return name
    project_id = _project_id(conn, project)
    found = (
        conn.execute(select(E.c.id).where(E.c.project_id == project_id, E.c.name == name)).first()
        if project_id is not None
        else None
    )
    if found is None:
        raise NotFound(
            f"environment {name!r} does not exist in project {project} "
            f"(add it with `modelvault env add {name}`)",
            environment=name,
        )
    return name


def add_environment(ctx: Context, name: str, project: str | None = None) -> Environment:
    project = check_name(project or ctx.settings.project, what="project name")
    name = check_name(name, what="environment name")
    with ctx.store.write() as conn:
        at = ctx.now()
        if name in DEFAULT_ENVIRONMENTS:
            raise AlreadyExists(f"environment {name!r} is built in", environment=name)
        project_id = ensure_project(conn, ctx, project, at)
        if conn.execute(
            select(E.c.id).where(E.c.project_id == project_id, E.c.name == name)
        ).first():
            raise AlreadyExists(f"environment {name!r} exists already", environment=name)
        event = append(
            conn,
            EventDraft(
                "environment.add",
                f"{project}/env:{name}",
                project=project,
                after={"environment": name},
            ),
            actor=ctx.actor,
            at=at,
        )
        conn.execute(
            insert(E).values(
                project_id=project_id,
                name=name,
                created_by=ctx.actor,
                created_at=to_text(at),
                audit_seq=event.seq,
            )
        )
    return Environment(project, name, False, ctx.actor, at)


def list_environments(ctx: Context, project: str | None = None) -> list[Environment]:
    project = check_name(project or ctx.settings.project, what="project name")
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(E.c.name, E.c.created_by, E.c.created_at)
            .select_from(E.join(P, E.c.project_id == P.c.id))
            .where(P.c.name == project)
            .order_by(E.c.name)
        ).all()
    return [Environment(project, n, True) for n in DEFAULT_ENVIRONMENTS] + [
        Environment(project, r.name, False, r.created_by, from_text(r.created_at)) for r in rows
    ]
