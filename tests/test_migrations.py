"""Schema migrations on every metadata backend: schema.py and the migration head agree, new
and pre-migration databases come to head, a failed migration leaves nothing behind, and a
store already at head opens without importing alembic."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, Table, inspect, text

from modelvault import Registry, Settings, StoreError
from modelvault.store import migrate, revisions, schema
from modelvault.store.engine import open_metadata_store
from modelvault.store.migrations import HEAD

from .backends import engine_for, store_url
from .conftest import write_model


def test_head_names_the_newest_revision() -> None:
    scripts = ScriptDirectory(str(migrate.SCRIPTS))
    assert scripts.get_heads() == [HEAD], "set HEAD in store/migrations/__init__.py"


def test_the_revisions_known_without_alembic_are_alembics_chain() -> None:
    scripts = ScriptDirectory(str(migrate.SCRIPTS))
    assert revisions.known() == tuple(s.revision for s in scripts.walk_revisions())[::-1]
    assert revisions.known()[-1] == HEAD


def _options(options: dict[str, Any] | None) -> list[tuple[str, str]]:
    return sorted((k, str(v)) for k, v in (options or {}).items())


def _layout(url: str) -> dict[str, Any]:
    """Everything a database holds: each table's columns, keys, indexes, constraints, rows."""
    engine = engine_for(url)
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        db = inspect(conn)
        for table in sorted(db.get_table_names()):
            columns = {
                c["name"]: (str(c["type"]), c["nullable"], c.get("default"))
                for c in db.get_columns(table)
            }
            indexes = sorted(
                (
                    i["name"],
                    tuple(i["column_names"]),
                    bool(i["unique"]),
                    _options(i.get("dialect_options")),
                )
                for i in db.get_indexes(table)
            )
            foreign = sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in db.get_foreign_keys(table)
            )
            unique = sorted(tuple(u["column_names"]) for u in db.get_unique_constraints(table))
            checks = sorted(c["sqltext"] for c in db.get_check_constraints(table))
            key = db.get_pk_constraint(table)
            rows = sorted(map(tuple, conn.execute(text(f"SELECT * FROM {table}")).all()), key=repr)
            found[table] = {
                "columns": columns,
                "primary key": tuple(key["constrained_columns"]),
                "indexes": indexes,
                "foreign keys": foreign,
                "unique": unique,
                "checks": checks,
                "rows": rows,
            }
    engine.dispose()
    return found


def test_a_new_store_created_from_schema_py_equals_the_replayed_revisions(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    created = open_metadata_store(db_url, Settings.from_env(env={}, home=tmp_path))
    try:
        done = migrate.upgrade(created)
    finally:
        created.dispose()
    assert (done.revision, done.state, done.applied) == (HEAD, "current", revisions.known())
    with store_url(backend, tmp_path / "replayed") as other:
        replayed = open_metadata_store(other, Settings.from_env(env={}, home=tmp_path))
        try:
            from alembic import command

            with replayed.migrating() as conn:
                command.upgrade(migrate._config(conn), HEAD)
        finally:
            replayed.dispose()
        assert _layout(db_url) == _layout(other)


def test_creating_a_new_store_does_not_import_alembic(settings: Settings) -> None:
    code = (
        "import sys; from pathlib import Path; from modelvault import Registry, Settings;"
        f"s = Settings.from_env(env={{'MODELVAULT_DB': {settings.db!r}}}, "
        f"home=Path({str(settings.home)!r}));"
        "r = Registry(settings=s); print(r.upgrade_schema().state, r.schema_status().state);"
        "r.models(); r.close(); print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["current", "current", "False"]


def test_schema_py_and_the_migration_head_agree(reg: Registry) -> None:
    from alembic import command

    with reg._ctx.store.migrating() as conn:  # replayed: a new store is built from schema.py
        command.upgrade(migrate._config(conn), HEAD)
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        # an index schema.py builds on the other kind of database only is not missing here
        only_here = schema.compared_on(engine.dialect.name)
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": only_here}
        )
        diff = compare_metadata(context, schema.metadata)
    engine.dispose()
    assert diff == [], (
        "schema.py differs from what the migrations build; add a revision "
        "(docs/migrations.md): " + repr(diff)
    )


SEARCH_INDEXES = {
    ("mv_version_params", "ix_params_key_num"),
    ("mv_version_params", "ix_params_key_text"),
    ("mv_version_metrics", "ix_metrics_key_value"),
    ("mv_version_tags", "ix_tags_key_value"),
}


def _search_indexes(url: str) -> set[tuple[str, str]]:
    engine = engine_for(url)
    with engine.connect() as conn:
        db = inspect(conn)
        found = {
            (table, str(i["name"]))
            for table, _ in SEARCH_INDEXES
            for i in db.get_indexes(table)
            if i["name"] in {name for _, name in SEARCH_INDEXES}
        }
    engine.dispose()
    return found


def test_the_key_value_search_indexes_exist_on_postgresql_only(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    """SQLite's plans never use them (they probe each version's primary key), so a new
    SQLite store does not pay for them on every registration; PostgreSQL's do."""
    store = open_metadata_store(db_url, Settings.from_env(env={}, home=tmp_path))
    try:
        migrate.upgrade(store)
    finally:
        store.dispose()
    expected = SEARCH_INDEXES if backend == "postgresql" else set()
    assert _search_indexes(db_url) == expected


def test_revision_0018_drops_the_search_indexes_on_sqlite_and_keeps_the_rows(
    backend: str, reg: Registry, tmp_path: Path
) -> None:
    from alembic import command

    with reg._ctx.store.migrating() as conn:
        command.upgrade(migrate._config(conn), "0017")
    assert _search_indexes(reg.settings.db) == SEARCH_INDEXES
    _sql(
        reg,
        "INSERT INTO mv_projects (name, created_by, created_at) "
        "VALUES ('kept', 'alice', '2026-03-01T09:00:00.000000Z')",
    )
    done = reg.upgrade_schema()
    assert done.applied == ("0018",)
    assert _search_indexes(reg.settings.db) == (
        SEARCH_INDEXES if backend == "postgresql" else set()
    )
    v = reg.register(
        "m", write_model(tmp_path, "a", b"a"), tags={"team": "ops"}, capture_environment=False
    )
    assert reg.search('tags.team = "ops"') == [v]
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM mv_projects WHERE name = 'kept'")).all()
    engine.dispose()
    with reg._ctx.store.migrating() as conn:  # and back
        command.downgrade(migrate._config(conn), "0017")
    assert _search_indexes(reg.settings.db) == SEARCH_INDEXES


def test_a_new_store_is_migrated_on_first_use(reg: Registry, tmp_path: Path) -> None:
    before = reg.schema_status()
    assert (before.revision, before.state) == (None, "empty")
    reg.register("m", write_model(tmp_path, "a", b"a"), capture_environment=False)
    after = reg.schema_status()
    assert (after.revision, after.state, after.head) == (HEAD, "current", HEAD)
    assert reg.upgrade_schema().applied == ()


def _sql(reg: Registry, *statements: str) -> None:
    engine = engine_for(reg.settings.db)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def test_a_store_from_before_migrations_is_stamped_then_upgraded(
    reg: Registry, tmp_path: Path
) -> None:
    from alembic import command

    # revision 0001 builds exactly what the first release did, minus the revision record
    with reg._ctx.store.migrating() as conn:
        command.upgrade(migrate._config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
    _sql(
        reg,
        "INSERT INTO mv_projects (name, created_by, created_at) "
        "VALUES ('kept', 'alice', '2026-03-01T09:00:00.000000Z')",
    )
    assert reg.schema_status().state == "unversioned"
    done = reg.upgrade_schema()
    assert (done.stamped, done.revision, done.state) == ("0001", HEAD, "current")
    scripts = ScriptDirectory(str(migrate.SCRIPTS))
    chain = [s.revision for s in scripts.walk_revisions()][::-1]  # oldest first
    assert done.applied == tuple(chain[1:])
    v = reg.register("m", write_model(tmp_path, "a", b"a"), capture_environment=False)
    assert reg.get("m:1") == v
    assert reg.verify_audit().ok
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT name FROM mv_projects WHERE name = 'kept'")).all()
    engine.dispose()
    assert len(kept) == 1


def test_a_store_from_a_newer_release_is_refused(settings: Settings) -> None:
    with Registry(settings=settings) as reg:
        reg.init()
        _sql(reg, "UPDATE alembic_version SET version_num = '9999'")
    with Registry(settings=settings) as reg:
        assert reg.schema_status().state == "ahead"
        with pytest.raises(StoreError, match="revision 9999, which this release"):
            reg.models()


def test_unknown_tables_without_a_revision_are_left_alone(reg: Registry) -> None:
    reg.init()
    _sql(
        reg,
        "DROP TABLE alembic_version",
        "UPDATE mv_meta SET value = '7' WHERE key = 'schema_version'",
    )
    with pytest.raises(StoreError, match="unknown schema version"):
        reg.upgrade_schema()


def test_a_failed_migration_leaves_nothing_behind(reg: Registry) -> None:
    _sql(reg, "CREATE TABLE mv_audit_events (seq INTEGER PRIMARY KEY)")  # in the way
    with pytest.raises(StoreError):
        reg.init()
    engine = engine_for(reg.settings.db)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"mv_audit_events"}
    engine.dispose()


def test_opening_a_store_at_head_does_not_import_alembic(reg: Registry) -> None:
    reg.init()
    code = (
        "import sys; from pathlib import Path; from modelvault import Registry, Settings;"
        f"s = Settings.from_env(env={{'MODELVAULT_DB': {reg.settings.db!r}}}, "
        f"home=Path({str(reg.settings.home)!r}));"
        "r = Registry(settings=s); r.models(); r.close();"
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_drafting_the_next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "SCRIPTS", scripts)
    extra = Table("mv_next_thing", schema.metadata, Column("id", Integer, primary_key=True))
    try:
        path = migrate.draft_revision("add the next thing")
    finally:
        schema.metadata.remove(extra)
    number = f"{int(HEAD) + 1:04d}"
    assert path == scripts / "versions" / f"{number}_add_the_next_thing.py"
    body = path.read_text()
    assert f"revision = {number!r}" in body and f"down_revision = {HEAD!r}" in body
    # drafted against the replayed revisions, so it holds exactly what schema.py adds
    assert body.count("op.create_table(") == 1 and "'mv_next_thing'" in body
