"""The hot statements on SQLite's driver (``store.lean``): the same rows, counts and errors as
through SQLAlchemy's execution, on both backends, and SQLAlchemy's execution where it has
work to do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    bindparam,
    event,
    exc,
    insert,
    select,
    text,
)

from modelvault import Registry, Settings, StoreError
from modelvault.store import lean, schema
from modelvault.store import statements as sql
from modelvault.store.engine import MetadataStore, open_metadata_store

from .backends import pg_schema, store_url

_U, _B, _P = schema.users, schema.inline_blobs, schema.projects
_BY_NAME = select(_U.c.name, _U.c.admin, _U.c.disabled_at).where(_U.c.name == bindparam("name"))
_BLOB = select(_B.c.data, _B.c.size).where(_B.c.digest == bindparam("digest"))
_ADD_USER = insert(_U)
_ADD_BLOB = insert(_B)
_ADD_PROJECT = insert(_P)
_PROJECTS_IN = select(_P.c.name).where(_P.c.name.in_(bindparam("names", expanding=True)))
_AS_KEYWORD = select(_U.c.name.label("from"))
_TWO_NAMED_ID = select(_U.c.id, _P.c.id).select_from(_U.join(_P, _U.c.name == _P.c.name))

_extra = MetaData()
_DEFAULTED = Table(
    "lean_defaulted",
    _extra,
    Column("id", Integer, primary_key=True),
    Column("n", Integer, nullable=False, default=7),  # computed by SQLAlchemy, in Python
)
_ADD_DEFAULTED = insert(_DEFAULTED)


@contextmanager
def _store(backend: str, tmp_path: Path) -> Iterator[MetadataStore]:
    with store_url(backend, tmp_path) as url:
        store = open_metadata_store(url, Settings.from_env(env={}))
        store.ensure_schema()
        try:
            yield store
        finally:
            store.dispose()


@contextmanager
def _sent(store: MetadataStore) -> Iterator[list[str]]:
    """The SQL of every statement SQLAlchemy executes meanwhile."""
    seen: list[str] = []

    def record(_c: object, _cur: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def _user(name: str, admin: bool) -> dict[str, object]:
    return {"name": name, "admin": admin, "created_by": "t", "created_at": "2026-01-01T00:00:00Z"}


def test_a_registrations_statements_skip_sqlalchemys_execution_on_sqlite(
    tmp_path: Path,
) -> None:
    (tmp_path / "m.bin").write_bytes(b"weights")
    with Registry(settings=Settings.from_env(env={}, home=tmp_path / "home")) as reg:
        reg.register("m", tmp_path / "m.bin")  # the model and its project exist from here
        with _sent(reg._ctx.store) as seen:
            version = reg.register("m", tmp_path / "m.bin", params={"lr": 0.1}, tags={"t": "x"})
        assert reg.get("m:2") == version
        assert reg.verify_audit().ok
        events = reg.audit(limit=1, newest_first=True)
    hot = (
        "mv_versions",
        "mv_models",
        "mv_version_blobs",
        "mv_inline_blobs",
        "mv_audit",
        "mv_stage",
    )
    assert not [s for s in seen if any(f" {table}" in s for table in hot)], seen
    assert events[0].action == "version.register" and events[0].subject == "default/m:2"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_read_the_same_through_the_driver(tmp_path: Path, backend: str) -> None:
    with _store(backend, tmp_path) as store, store.write() as conn:
        lean.run_many(conn, _ADD_USER, [_user("ann", True), _user("bob", False)])
        lean.run(
            conn, _ADD_BLOB, {"digest": "d1", "size": 3, "data": b"\x00\x01\xff", "stored_at": "x"}
        )
        for name, admin in (("ann", True), ("bob", False)):
            row = lean.run(conn, _BY_NAME, {"name": name}).one()
            through = conn.execute(_BY_NAME, {"name": name}).one()
            assert tuple(row) == tuple(through) == (name, admin, None)
            assert row.admin is admin and row.name == name  # a boolean, by column name
        blob = lean.run(conn, _BLOB, {"digest": "d1"}).one()
        assert bytes(blob.data) == b"\x00\x01\xff" and blob.size == 3
        assert lean.run(conn, _BY_NAME, {"name": "nobody"}).first() is None
        assert lean.run(conn, _BY_NAME, {"name": "nobody"}).all() == []
        with pytest.raises(exc.NoResultFound):
            lean.run(conn, _BY_NAME, {"name": "nobody"}).one()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_returned_values_and_changed_rows_are_counted(tmp_path: Path, backend: str) -> None:
    with _store(backend, tmp_path) as store, store.write() as conn:
        head = lean.run(conn, sql.LOCK_HEAD).one()
        moved = lean.run(conn, sql.MOVE_HEAD, {"old_seq": head.seq, "new_seq": 1, "new_hash": "h"})
        missed = lean.run(conn, sql.MOVE_HEAD, {"old_seq": 99, "new_seq": 2, "new_hash": "g"})
        assert (moved.rowcount, missed.rowcount) == (1, 0)
        added = lean.run(
            conn, sql.INSERT_PROJECT, {"name": "p", "created_by": "t", "created_at": "x"}
        )
        project_id = added.scalar_one()
        assert conn.execute(sql.PROJECT_ID, {"project": "p"}).scalar_one() == project_id
        assert tuple(lean.run(conn, sql.LOCK_HEAD).one()) == (1, "h")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_driver_errors_arrive_as_sqlalchemy_raises_them(tmp_path: Path, backend: str) -> None:
    def twice_one_by_one(conn: Connection) -> None:
        lean.run(conn, _ADD_USER, _user("ann", True))
        lean.run(conn, _ADD_USER, _user("ann", False))  # the name is unique

    def twice_at_once(conn: Connection) -> None:
        lean.run_many(conn, _ADD_USER, [_user("cy", True), _user("cy", True)])

    with _store(backend, tmp_path) as store:
        for write in (twice_one_by_one, twice_at_once):
            with pytest.raises(StoreError, match="the store refused a write") as caught:
                _in_a_write(store, write)
            assert isinstance(caught.value.__cause__, exc.IntegrityError)
        with store.read() as conn:  # no transaction left anything
            assert conn.execute(text("SELECT count(*) FROM mv_users")).scalar_one() == 0


def _in_a_write(store: MetadataStore, work: Callable[[Connection], None]) -> None:
    with store.write() as conn:
        work(conn)


def test_statements_needing_sqlalchemys_execution_still_get_it(tmp_path: Path) -> None:
    with _store("sqlite", tmp_path) as store:
        with store.write() as conn:
            _extra.create_all(conn)
        with _sent(store) as seen, store.write() as conn:
            lean.run(conn, _ADD_DEFAULTED, {"id": 1})  # n: its default, computed in Python
            lean.run_many(
                conn,
                _ADD_PROJECT,
                [{"name": n, "created_by": "t", "created_at": "x"} for n in "abc"],
            )
            found = lean.run(conn, _PROJECTS_IN, {"names": ["a", "c", "z"]}).all()
            lean.run(conn, _ADD_USER, _user("a", False))
            pair = lean.run(conn, _TWO_NAMED_ID).all()  # two columns named "id"
            keyword = lean.run(conn, _AS_KEYWORD).one()  # a column named "from"
            n = conn.execute(select(_DEFAULTED.c.n)).scalar_one()
        assert n == 7
        assert sorted(r.name for r in found) == ["a", "c"]
        assert len(pair) == 1 and len(pair[0]) == 2
        assert keyword._mapping["from"] == "a"
        through = [s.split()[:3] for s in seen]
        assert ["INSERT", "INTO", "lean_defaulted"] in through  # these went through SQLAlchemy
        assert any(s.startswith("SELECT mv_projects.name") for s in seen)
        assert not any(s.startswith("INSERT INTO mv_projects") for s in seen)  # this did not


def test_a_statement_built_per_call_runs_with_its_own_plan(tmp_path: Path) -> None:
    with _store("sqlite", tmp_path) as store, store.write() as conn:
        lean.run_many(conn, _ADD_USER, [_user("ann", True), _user("bob", False)])
        for name in ("ann", "bob"):  # a new object each time, each with a plan of its own
            query = select(_U.c.name).where(_U.c.name == bindparam("n"))
            assert lean.run(conn, query, {"n": name}).scalar_one() == name


def test_postgresql_statements_go_through_sqlalchemy(tmp_path: Path) -> None:
    with pg_schema() as url:
        store = open_metadata_store(url, Settings.from_env(env={}))
        store.ensure_schema()
        with _sent(store) as seen, store.write() as conn:
            lean.run(conn, _ADD_USER, _user("ann", True))
        store.dispose()
    assert any(s.startswith("INSERT INTO mv_users") for s in seen)
