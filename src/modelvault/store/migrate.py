"""Bringing a metadata database to the schema this release expects.

The upgrade runs in one transaction holding the backend's migration lock, so of several
processes starting at once exactly one migrates. A new database is created at ``HEAD``
without alembic (``revisions.py``); alembic is imported only to run revisions on an existing
database behind ``HEAD``. ``python -m modelvault.store.migrate revision -m MESSAGE`` drafts
the next revision.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from ..domain import SchemaStatus
from ..errors import StoreError
from . import revisions
from .migrations import HEAD

if TYPE_CHECKING:
    from alembic.config import Config

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


def status(store: MetadataStore) -> SchemaStatus:
    """Where the schema stands, changing nothing (without importing alembic)."""
    with store.inspecting() as conn:
        revision, state = revisions.inspect_state(conn)
    return SchemaStatus(db=store.display_url, revision=revision, head=HEAD, state=state)


def upgrade(store: MetadataStore) -> SchemaStatus:
    """Bring the schema to ``HEAD`` (a no-op when it is there), under the migration lock.

    A database at ``HEAD`` costs one read, and an empty one is created from ``schema.py``
    in one step; only a database behind ``HEAD`` imports alembic to run the revisions."""
    if store.recorded_revision() == HEAD:
        return SchemaStatus(db=store.display_url, revision=HEAD, head=HEAD, state="current")
    with store.migrating() as conn:
        # read under the lock: another process may have just migrated
        before, state = revisions.inspect_state(conn)
        if state == "ahead":
            raise StoreError(
                f"the metadata store's schema is at revision {before}, which this release of "
                f"modelvault does not know (its newest is {HEAD}): upgrade modelvault"
            )
        stamped = None
        applied: tuple[str, ...] = ()
        if state == "empty":
            applied = revisions.create(conn)
        elif state != "current":
            applied, stamped = _run_revisions(conn, before, state)
        after, state = revisions.inspect_state(conn)
    return SchemaStatus(
        db=store.display_url,
        revision=after,
        head=HEAD,
        state=state,
        applied=applied,
        stamped=stamped,
    )


def _run_revisions(
    conn: Connection, before: str | None, state: str
) -> tuple[tuple[str, ...], str | None]:
    """Alembic's upgrade to ``HEAD`` (after stamping an unversioned database at 0001)."""
    from alembic import command

    stamped = None
    if state == "unversioned":
        command.stamp(_config(conn), UNVERSIONED_REVISION)
        before = stamped = UNVERSIONED_REVISION
    command.upgrade(_config(conn), HEAD)
    chain = revisions.known()
    return chain[chain.index(before) + 1 :] if before in chain else chain, stamped


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
            with store.migrating() as conn:
                # replay the revisions: a database created from schema.py has no difference
                command.upgrade(_config(conn), HEAD)
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
