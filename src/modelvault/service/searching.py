"""``search``: versions matching a query in the search language (docs/search.md)."""

from __future__ import annotations

from ..domain import Version
from ..limits import check_name
from ..search import search_clause
from ..store import schema
from .context import Context, base_version_select
from .records import version_from_row


def search(
    ctx: Context,
    query: str,
    *,
    project: str | None = None,
    all_projects: bool = False,
    limit: int | None = 1000,
) -> list[Version]:
    clause = search_clause(query)
    select_ = base_version_select().where(clause)
    if not all_projects:
        select_ = select_.where(
            schema.projects.c.name
            == check_name(project or ctx.settings.project, what="project name")
        )
    select_ = select_.order_by(schema.models.c.name, schema.versions.c.number)
    if limit is not None:
        select_ = select_.limit(limit)
    with ctx.store.read() as conn:
        rows = conn.execute(select_).all()
    return [version_from_row(r) for r in rows]
