"""Where a metadata database's schema stands, and creating a new one — without Alembic.

The revisions this release knows are read from the file names in ``migrations/versions/``.
A new (empty) database is built from ``schema.py`` in one ``create_all``, seeded, and
recorded at ``HEAD`` — Alembic's "create_all, then stamp head" recipe, done with plain SQL;
a test keeps the result equal to replaying every revision. Only an existing database behind
``HEAD`` needs Alembic (``migrate.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_mock_engine,
    insert,
    select,
    text,
)
from sqlalchemy import inspect as inspect_db

from ..errors import StoreError
from . import schema
from .migrations import HEAD

VERSIONS = Path(__file__).parent / "migrations" / "versions"

# The table and constraint Alembic itself would create to record the revision.
_VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)

# The rows revision 0001 seeds (and a fresh database needs): the genesis head of the audit
# chain, which writers lock, and the pre-migration schema mark.
SEED: tuple[tuple[Table, dict[str, object]], ...] = (
    (schema.audit_head, {"id": 1, "seq": 0, "hash": "0" * 64}),
    (schema.meta, {"key": "schema_version", "value": "1"}),
)


def known() -> tuple[str, ...]:
    """The revisions this release ships, oldest first (they are numbered and form one line)."""
    return tuple(sorted(p.name.split("_", 1)[0] for p in VERSIONS.glob("[0-9]*_*.py")))


def inspect_state(conn: Connection) -> tuple[str | None, str]:
    """The revision the database records, and its state (see ``SchemaStatus``)."""
    tables = set(inspect_db(conn).get_table_names())
    if _VERSION_TABLE.name in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if revision == HEAD:
            return revision, "current"
        return revision, "behind" if revision in known() else "ahead"
    if schema.audit_head.name not in tables:
        return None, "empty"
    marked = conn.execute(
        select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
    ).scalar()
    if marked != "1":
        raise StoreError(
            f"the metadata store holds modelvault tables of an unknown schema version "
            f"({marked!r}) and no migration record; refusing to touch it"
        )
    return None, "unversioned"


def ddl(conn: Connection) -> list[str]:
    """The statements ``create_all`` would run on an empty database of *conn*'s kind, in its
    order, as text (compiled for *conn*'s dialect)."""
    statements: list[str] = []

    def collect(sql: Any, *_: Any, **__: Any) -> None:
        statements.append(str(sql.compile(dialect=conn.dialect)).strip())

    schema.metadata.create_all(create_mock_engine(conn.engine.url, collect), checkfirst=False)
    return statements


def create(conn: Connection) -> tuple[str, ...]:
    """Build the whole schema at ``HEAD`` on an empty database, in the caller's transaction
    (which holds the migration lock); returns the revisions this stands for."""
    # checkfirst=False: a table already in the way fails the creation (and the transaction)
    # instead of being silently adopted
    # On PostgreSQL: one round trip for the whole schema (a script, in the simple query
    # protocol) instead of one per table and index, at a third of create_all's CPU (the
    # server's first start, docs/server.md). A '%' would need the driver's escaping.
    script = ";\n".join(ddl(conn)) if conn.dialect.name == "postgresql" else None
    if script is not None and "%" not in script:
        conn.exec_driver_sql(script)
    else:
        schema.metadata.create_all(conn, checkfirst=False)
    for table, row in SEED:
        conn.execute(insert(table).values(**row))
    _VERSION_TABLE.create(conn)
    conn.execute(insert(_VERSION_TABLE).values(version_num=HEAD))
    return known()
