"""Metadata store URLs: each scheme reaches its backend, passwords never reach messages, and
a wrong URL or setting is one clear error."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, make_url, text

from modelvault import InvalidInput, Registry, Settings, StoreError
from modelvault.store.engine import MetadataStore, WouldWait, open_metadata_store, unwaiting

from .backends import PG_URL, pg_schema


def _settings(**env: str) -> Settings:
    return Settings.from_env(env=env)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_every_postgresql_spelling_uses_psycopg(scheme: str) -> None:
    url = make_url(PG_URL).set(drivername=scheme).render_as_string(hide_password=False)
    store = open_metadata_store(url, _settings())
    assert store.engine.url.drivername == "postgresql+psycopg"
    assert store.dialect == "postgresql"
    store.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported metadata store URL scheme 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "modelvault uses psycopg 3"),
        ("sqlite:///:memory:", "in-memory SQLite store is not supported"),
    ],
)
def test_unsupported_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        open_metadata_store(url, _settings())


def test_lock_timeout_setting_is_checked() -> None:
    with pytest.raises(InvalidInput, match="MODELVAULT_PG_LOCK_TIMEOUT_MS"):
        open_metadata_store(PG_URL, _settings(MODELVAULT_PG_LOCK_TIMEOUT_MS="soon"))


def test_passwords_stay_out_of_messages(tmp_path: Path) -> None:
    url = "postgresql://mv:s3cret@127.0.0.1:1/db?connect_timeout=1"
    reg = Registry(settings=Settings.from_env(env={"MODELVAULT_DB": url}, home=tmp_path))
    with pytest.raises(StoreError, match="cannot open the metadata store") as info:
        reg.models()
    assert "s3cret" not in info.value.message and "***" in info.value.message
    assert "\n" not in info.value.message
    reg.close()


def test_init_reports_the_store_without_its_password(tmp_path: Path) -> None:
    with pg_schema() as url:
        secret = make_url(url).set(password="unused-by-trust-auth")
        shown = secret.render_as_string(hide_password=False)
        with Registry(
            settings=Settings.from_env(env={"MODELVAULT_DB": shown}, home=tmp_path)
        ) as reg:
            where = reg.init()
        assert "unused-by-trust-auth" not in where["db"]


def test_sqlite_transactions_one_after_another_reuse_one_warm_connection(tmp_path: Path) -> None:
    # SQLite keeps its page cache per connection and drops it when another connection has
    # written: taking the most recently used idle connection (not the one idle longest) spares
    # a server's serial requests re-reading the pages each one touches
    store = open_metadata_store(f"sqlite:///{tmp_path / 'r.db'}", _settings())
    store.ensure_schema()
    with store.read() as a, store.read() as b:  # two connections in the pool
        held = [a.connection.dbapi_connection, b.connection.dbapi_connection]
    assert held[0] is not held[1]
    used = []
    for _ in range(4):
        with store.write() as conn:
            used.append(conn.connection.dbapi_connection)
        with store.read() as conn:
            used.append(conn.connection.dbapi_connection)
    assert all(c is used[0] for c in used)
    store.dispose()


@contextmanager
def _pg_registry_sending(tmp_path: Path) -> Iterator[tuple[Registry, list[str]]]:
    """A registry on a fresh PostgreSQL schema, and the SQL text of every statement it sends
    from here on (a file to register is at tmp_path/m.bin)."""
    from sqlalchemy import event

    (tmp_path / "m.bin").write_bytes(b"weights")
    with pg_schema() as url:
        env = {"MODELVAULT_DB": url}
        with Registry(settings=Settings.from_env(env=env, home=tmp_path / "home")) as reg:
            reg.init()
            sent: list[str] = []

            @event.listens_for(reg._ctx.store.engine, "before_cursor_execute")
            def _seen(_c: object, _cur: object, text: str, *_: object) -> None:
                sent.append(text)

            yield reg, sent


def test_postgresql_writes_a_versions_search_rows_in_one_statement(tmp_path: Path) -> None:
    # params, metrics and tags go to their three tables in one statement, from arrays
    with _pg_registry_sending(tmp_path) as (reg, sent):
        params = {"lr": 0.5, "layers": 3, "act": "relu", "on": True, "none": None}
        metrics = {f"m{i}": i / 10 for i in range(20)}
        reg.register("m", tmp_path / "m.bin", params=params, metrics=metrics, tags={"t": "x"})
        found = {
            q: [v.number for v in reg.search(q)]
            for q in (
                "params.lr = 0.5",
                "params.layers > 2",
                "params.act = 'relu'",
                "params.on = 'true'",
                "metrics.m19 > 1.8",
                "tags.t = 'x'",
            )
        }
        version = reg.get("m:1")
    writes = [t for t in sent if "mv_version_metrics" in t and "SELECT" not in t.split()[0]]
    assert len(writes) == 1
    assert "mv_version_params" in writes[0] and "mv_version_tags" in writes[0]
    assert all(numbers == [1] for numbers in found.values()), found
    assert dict(version.params) == params and dict(version.metrics) == metrics


def test_postgresql_writes_many_rows_of_one_table_in_one_statement(tmp_path: Path) -> None:
    # psycopg 3's executemany converts and sends row by row (in Python); a many-row INSERT
    # (here a version's blobs: its manifest, its file, its environment's packages) goes as
    # one multi-row statement instead
    with _pg_registry_sending(tmp_path) as (reg, sent):
        reg.register("m", tmp_path / "m.bin")
        with reg._ctx.store.read() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM mv_version_blobs").scalar_one()
    inserts = [t for t in sent if t.startswith("INSERT INTO mv_version_blobs")]
    assert rows >= 2 and len(inserts) == 1
    assert inserts[0].count("%(") == 3 * rows  # every row's three values in the one statement


def test_postgresql_writers_read_the_audit_head_with_their_lock(tmp_path: Path) -> None:
    # the lock a PostgreSQL writer takes at its start reads the head too: its first event
    # needs no statement of its own to read it, and later events in it read the moved head
    with _pg_registry_sending(tmp_path) as (reg, sent):

        def head_reads() -> int:
            found = [t for t in sent if "mv_audit_head" in t and "FOR UPDATE" in t]
            sent.clear()
            return len(found)

        before = len(reg.audit())
        sent.clear()
        reg.register("m", tmp_path / "m.bin")  # the model is created with it: two events
        first, made = head_reads(), len(reg.audit()) - before
        # a writer that appends nothing: the head its lock read is not the next writer's
        with pytest.raises(InvalidInput), reg._ctx.store.write():
            raise InvalidInput("changed my mind")
        sent.clear()
        reg.register("m", tmp_path / "m.bin", tags={"t": "x"})
        second = head_reads()
        assert reg.verify_audit().ok
    assert made >= 2 and first == made  # the lock's read, then one per later event
    assert second == 1


def test_the_suite_vacuums_the_catalogs_where_autovacuum_is_off(tmp_path: Path) -> None:
    import psycopg

    from .backends import CATALOGS, vacuum_catalogs_without_autovacuum

    conninfo = make_url(PG_URL).set(drivername="postgresql").render_as_string()

    def vacuums() -> dict[str, int]:  # runs, not dead rows: other tests make those meanwhile
        with psycopg.connect(conninfo, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT relname, vacuum_count FROM pg_stat_sys_tables WHERE relname = ANY(%s)",
                (list(CATALOGS),),
            ).fetchall()
        return {name: int(count) for name, count in rows}

    with psycopg.connect(conninfo, autocommit=True) as admin:
        autovacuum = admin.execute("SHOW autovacuum").fetchone()
    before = vacuums()
    vacuumed = vacuum_catalogs_without_autovacuum()
    after = vacuums()
    assert autovacuum is not None and set(before) == set(CATALOGS)
    assert vacuumed is (autovacuum[0] == "off")
    # (the server-pg benchmark's smoke test, on another worker, may vacuum them too)
    assert all(after[name] >= before[name] + int(vacuumed) for name in CATALOGS)


@contextmanager
def _writer_holding(store: MetadataStore) -> Iterator[tuple[threading.Thread, threading.Event]]:
    """A thread inside a write transaction of *store* until the event given is set (or the
    block ends)."""
    entered, release = threading.Event(), threading.Event()

    def run() -> None:
        with store.write():
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert entered.wait(10)
        yield thread, release
    finally:
        release.set()
        thread.join(10)


def test_sqlite_writers_of_one_process_queue_before_they_begin(tmp_path: Path) -> None:
    # SQLite wakes a writer that finds the file locked by polling (sleeps of 1, 2, 5 ms and
    # more): this process's writers wait on a lock of their own instead, and only the one
    # whose turn it is sends BEGIN IMMEDIATE
    store = open_metadata_store(f"sqlite:///{tmp_path / 'r.db'}", _settings())
    store.ensure_schema()
    begun: list[str] = []

    opener = store._opener

    def _record(conn: Connection, kind: str, nowait: bool) -> None:
        if kind == "mv_write":
            begun.append(threading.current_thread().name)
        opener(conn, kind, nowait)

    store._opener = _record

    queue = store._writers
    assert queue is not None
    done: list[int] = []

    def write_second() -> None:
        with store.write() as conn:
            done.append(conn.execute(text("SELECT 1")).scalar_one())

    with _writer_holding(store) as (first, release):
        second = threading.Thread(target=write_second, name="second")
        second.start()
        deadline = time.monotonic() + 10
        while queue.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert queue.waiting == 1  # the second writer waits in the queue…
        assert begun == [first.name]  # …without having begun a transaction
        release.set()
        first.join(10)
        second.join(10)
    assert begun == [first.name, "second"] and done == [1]
    store.dispose()


def test_a_queued_sqlite_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_metadata_store(url, _settings(MODELVAULT_SQLITE_BUSY_MS="200"))
    store.ensure_schema()
    with (
        _writer_holding(store),
        pytest.raises(StoreError, match="stayed locked by another writer"),
        store.write(),
    ):
        pass
    with store.write() as conn:  # the queue is free again
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    store.dispose()


def test_stores_opened_on_one_sqlite_file_share_its_queue(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to(tmp_path / "a")
    one = open_metadata_store(f"sqlite:///{tmp_path / 'a' / 'r.db'}", _settings())
    two = open_metadata_store(f"sqlite:///{tmp_path / 'b' / 'r.db'}", _settings())
    other = open_metadata_store(f"sqlite:///{tmp_path / 'other.db'}", _settings())
    assert one._writers is not None and one._writers is two._writers
    assert other._writers is not None and other._writers is not one._writers
    for store in (one, two, other):
        store.dispose()


def test_a_forked_child_is_not_held_by_a_writer_of_its_parent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_metadata_store(url, _settings(MODELVAULT_SQLITE_BUSY_MS="3000"))
    store.ensure_schema()
    with _writer_holding(store):
        pid = os.fork()
        if pid == 0:  # the child: the parent's writer is not here, so its turn never ends
            code = 1
            try:
                store.engine.dispose(close=False)
                queue = store._writers
                assert queue is not None
                with queue:  # free at once in the child
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.dispose()


def test_the_stores_engines_dispatch_no_connection_events(tmp_path: Path) -> None:
    # a connection event listener (SQLAlchemy's "begin" was one) makes SQLAlchemy dispatch
    # events around every statement: each backend begins its transactions itself instead
    sqlite = open_metadata_store(f"sqlite:///{tmp_path / 'r.db'}", _settings())
    sqlite.ensure_schema()
    with sqlite.write() as conn:
        conn.execute(text("SELECT 1"))
    assert not sqlite.engine._has_events
    sqlite.dispose()
    with pg_schema() as url:
        pg = open_metadata_store(url, _settings())
        pg.ensure_schema()
        with pg.write() as conn:
            conn.execute(text("SELECT 1"))
        assert not pg.engine._has_events
        pg.dispose()


def _count_rows(store: MetadataStore) -> int:
    with store.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM mv_projects")).scalar_one())


def _add_project(conn: Connection, name: str) -> None:
    conn.execute(
        text(
            "INSERT INTO mv_projects (name, created_by, created_at)"
            " VALUES (:n, 'test', '2026-01-01T00:00:00Z')"
        ),
        {"n": name},
    )


@contextmanager
def _foreign_writer(db: Path) -> Iterator[None]:
    """Another process's writer, as SQLite sees it: a connection of its own (not this
    process's queue) inside BEGIN IMMEDIATE for the block."""
    import sqlite3

    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_unwaiting_write_to_a_free_database_writes(tmp_path: Path, backend: str) -> None:
    # (on PostgreSQL unwaiting changes nothing: its writes never run on the event loop)
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'r.db'}"
        if backend == "postgresql":
            url = stack.enter_context(pg_schema())
        store = open_metadata_store(url, _settings())
        store.ensure_schema()
        before = _count_rows(store)
        with unwaiting(), store.write() as conn:
            _add_project(conn, "p1")
        assert _count_rows(store) == before + 1
        store.dispose()


@contextmanager
def _foreign_writer_for(seconds: float, db: Path) -> Iterator[None]:
    """Another process's writer holding the database from now until *seconds* later."""
    locked = threading.Event()

    def hold() -> None:
        with _foreign_writer(db):
            locked.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        holder.join(10)


def _patient_store(db: Path) -> MetadataStore:
    """A SQLite store whose writers wait up to 20 s for the lock."""
    store = open_metadata_store(f"sqlite:///{db}", _settings(MODELVAULT_SQLITE_BUSY_MS="20000"))
    store.ensure_schema()
    return store


@pytest.mark.parametrize("holder", ["this process", "another process"])
def test_an_unwaiting_write_does_not_wait_for_another_writer(tmp_path: Path, holder: str) -> None:
    # this process's writers hold its queue; another process's, SQLite's own lock
    store = _patient_store(tmp_path / "r.db")
    before = _count_rows(store)
    held = (
        _writer_holding(store) if holder == "this process" else _foreign_writer(tmp_path / "r.db")
    )
    with held:
        t0 = time.monotonic()
        with pytest.raises(WouldWait), unwaiting(), store.write() as conn:
            _add_project(conn, "p1")
        assert time.monotonic() - t0 < 5  # not the 20 s busy timeout
    assert _count_rows(store) == before  # nothing written
    store.dispose()


def test_a_connection_that_refused_to_wait_waits_again_afterwards(tmp_path: Path) -> None:
    # the busy timeout set aside for the unwaiting write is restored: a writer that finds
    # the database locked for a moment gets it once the other one is done
    store = _patient_store(tmp_path / "r.db")
    before = _count_rows(store)
    with (
        _foreign_writer(tmp_path / "r.db"),
        pytest.raises(WouldWait),
        unwaiting(),
        store.write() as conn,
    ):
        _add_project(conn, "p1")
    with _foreign_writer_for(0.3, tmp_path / "r.db"):
        t0 = time.monotonic()
        with store.write() as conn:
            _add_project(conn, "p2")
        assert time.monotonic() - t0 > 0.2  # it waited for the other writer
    assert _count_rows(store) == before + 1
    store.dispose()


def test_only_the_first_write_of_an_unwaiting_block_may_refuse_to_wait(tmp_path: Path) -> None:
    # once one write has committed, running the block again elsewhere would repeat it: the
    # writes after it wait as any other
    store = _patient_store(tmp_path / "r.db")
    before = _count_rows(store)
    with unwaiting():
        with store.write() as conn:
            _add_project(conn, "p1")
        with _foreign_writer_for(0.3, tmp_path / "r.db"), store.write() as conn:
            _add_project(conn, "p2")  # waits for the other writer, then writes
    assert _count_rows(store) == before + 2
    store.dispose()
