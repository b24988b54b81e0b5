"""Bringing a metadata database to the schema this release expects, with alembic.

Only imported when the recorded revision is not ``HEAD``: the upgrade runs in one transaction
holding the backend's migration lock, so of several processes starting at once exactly one
migrates. ``python -m modelvault.store.migrate revision -m MESSAGE`` drafts the next revision.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, inspect, select, text

from ..domain import SchemaStatus
from ..errors import StoreError
from . import schema
from .migrations import HEAD

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from .engine import MetadataStore

SCRIPTS = Path(__file__).parent / "migrations"
# What a database made before migrations existed is recorded as.
UNVERSIONED_REVISION = "0001"


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS).replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = conn
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def _inspect(conn: Connection, scripts: ScriptDirectory) -> tuple[str | None, str]:
    """The revision the database records, and its state (see ``SchemaStatus``)."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        known = {s.revision for s in scripts.walk_revisions()}
        if revision not in known:
            return revision, "ahead"
        return revision, "current" if revision == HEAD else "behind"
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


def status(store: MetadataStore) -> SchemaStatus:
    """Where the schema stands, changing nothing."""
    scripts = _scripts()
    with store.inspecting() as conn:
        revision, state = _inspect(conn, scripts)
    return SchemaStatus(db=store.display_url, revision=revision, head=HEAD, state=state)


def upgrade(store: MetadataStore) -> SchemaStatus:
    """Bring the schema to ``HEAD`` (a no-op when it is there), under the migration lock."""
    from alembic import command

    scripts = _scripts()
    with store.migrating() as conn:
        # read under the lock: another process may have just migrated
        before, state = _inspect(conn, scripts)
        if state == "ahead":
            raise StoreError(
                f"the metadata store's schema is at revision {before}, which this release of "
                f"modelvault does not know (its newest is {HEAD}): upgrade modelvault"
            )
        stamped = None
        if state == "unversioned":
            command.stamp(_config(conn), UNVERSIONED_REVISION)
            before = stamped = UNVERSIONED_REVISION
        if before != HEAD:
            command.upgrade(_config(conn), HEAD)
        after, state = _inspect(conn, scripts)
    applied = [s.revision for s in scripts.iterate_revisions(after, before or "base")]
    return SchemaStatus(
        db=store.display_url,
        revision=after,
        head=HEAD,
        state=state,
        applied=tuple(reversed(applied)),
        stamped=stamped,
    )


def draft_revision(message: str) -> Path:
    """Write versions/NNNN_<message>.py holding what schema.py has and the head lacks."""
    from alembic import command

    from ..settings import Settings
    from .engine import open_metadata_store

    number = f"{int(HEAD) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/draft.db"
        store = open_metadata_store(url, Settings.from_env(env={}, home=Path(tmp)))
        try:
            upgrade(store)
            with store.migrating() as conn:
                script = command.revision(
                    _config(conn), message=message, autogenerate=True, rev_id=number
                )
        finally:
            store.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelvault.store.migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="draft the next migration from schema.py")
    revision.add_argument("-m", "--message", required=True)
    args: Any = parser.parse_args(argv)
    path = draft_revision(args.message)
    print(f"wrote {path}\nreview it, then set HEAD in {SCRIPTS / '__init__.py'}")


if __name__ == "__main__":
    main()
