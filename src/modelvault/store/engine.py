"""The metadata store: a SQLAlchemy engine chosen by URL, and the kinds of transaction.

``write()`` opens the single unit of work a state change runs in; writers queue instead of
failing mid-transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the audit head row is locked
first). ``read()`` opens a consistent snapshot. Backends come from one table keyed by scheme.

SQLite wakes a writer that finds the database locked by polling: it sleeps 1, 2, 5, 10 ms and
longer between tries, however soon the lock is free. So the writers of one process (a
server's threads) queue on a lock of their own first, and each starts the moment the one
before it commits; SQLite's own wait is left to writers in other processes.

A server runs some SQLite writes on its event loop (``unwaiting``): the first write there
starts only if no other writer, of this process or another, holds the database, and raises
``WouldWait`` otherwise, before anything is written, so that the caller runs it again in a
thread, where waiting blocks nothing else.
"""

from __future__ import annotations

import os
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, RootTransaction, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from ..errors import InvalidInput, ModelVaultError, StoreError
from ..settings import Settings
from . import schema
from .migrations import HEAD
from .urls import scheme as url_scheme

# Execution options naming the kind of transaction; each backend's "begin" hook reads them.
_WRITE = "mv_write"
_SNAPSHOT = "mv_snapshot"
_NO_BEGIN = "mv_no_begin"
_MIGRATE = "mv_migrate"
GENESIS_HASH = "0" * 64
AUDIT_SEQ = "mv_audit_seq"  # in a writing connection's info: the newest event it appended
# In a PostgreSQL writer's info until its first event: the audit head (seq, hash) its lock
# read when the transaction began (nothing else can move the head while the lock is held)
LOCKED_HEAD = "mv_locked_head"

_REVISION = text("SELECT version_num FROM alembic_version")
# Begins a backend's transaction of a kind on a connection SQLAlchemy has just begun: called
# by MetadataStore._begin, not hooked to SQLAlchemy's "begin" event, since any connection
# event listener makes SQLAlchemy dispatch events around every statement executed.
Opener = Callable[[Connection, str, bool], None]
_LOCKED = "the registry database stayed locked by another writer for too long; try again"


class WouldWait(Exception):
    """A write that may not wait (``unwaiting``) found another writer holding the database;
    nothing was written."""


class _Unwaiting:
    __slots__ = ("armed",)

    def __init__(self) -> None:
        self.armed = True  # the next write may not wait


_UNWAITING: ContextVar[_Unwaiting | None] = ContextVar("mv_unwaiting", default=None)


@contextmanager
def unwaiting() -> Iterator[None]:
    """The block runs where it must not wait for a lock (a server's event loop).

    Its first SQLite write starts only if no other writer holds the database, and raises
    ``WouldWait`` otherwise; nothing is written by then, so the whole block can run again
    elsewhere. Once that write has begun, later writes of the block wait as usual: running
    the block again could then repeat a committed write."""
    token = _UNWAITING.set(_Unwaiting())
    try:
        yield
    finally:
        _UNWAITING.reset(token)


def in_unwaiting() -> bool:
    """Whether this code runs inside ``unwaiting`` (where slow work belongs elsewhere)."""
    return _UNWAITING.get() is not None


def _first_unwaiting() -> bool:
    """Whether the write starting now is an ``unwaiting`` block's first (and disarm it)."""
    state = _UNWAITING.get()
    if state is None or not state.armed:
        return False
    state.armed = False
    return True


class MetadataStore:
    """Owns the engine; every use-case borrows a connection through read() or write()."""

    def __init__(
        self,
        engine: Engine,
        *,
        url: str,
        opener: Opener,
        writers: WriterQueue | None = None,
    ) -> None:
        self.engine = engine
        self._opener = opener  # begins the backend's transaction of each kind
        self.url = url
        self.dialect = engine.dialect.name
        self._ready = False
        self._writers = writers  # this process's writers of the same SQLite file
        # called after each write commits, with the audit head it left (None: it wrote no event)
        self.after_write: list[Callable[[int | None], None]] = []

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            return self.url

    def ensure_schema(self) -> None:
        """Bring the schema to this release's head; once at head, this reads one row."""
        if self._ready:
            return
        if self.recorded_revision() != HEAD:
            from .migrate import upgrade

            upgrade(self)
        self._ready = True

    def recorded_revision(self) -> str | None:
        with self._transaction(_NO_BEGIN) as conn:
            try:
                return conn.execute(_REVISION).scalar()
            except DBAPIError:
                # no revision table (a new or pre-migration database); the upgrade, under its
                # lock, looks properly and reports any real failure
                return None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One atomic unit of work: state rows and their audit events commit together."""
        self.ensure_schema()
        with self._transaction(_WRITE) as conn:
            conn.info.pop(AUDIT_SEQ, None)  # (the info is the DBAPI connection's: it stays)
            yield conn
            seq = conn.info.pop(AUDIT_SEQ, None)
        for hook in self.after_write:  # after the commit: never part of the unit of work
            hook(seq)

    @contextmanager
    def read(self, *, snapshot: bool = True) -> Iterator[Connection]:
        """A read; with ``snapshot=False`` no transaction is opened, which is right (and
        cheaper) for a single statement."""
        self.ensure_schema()
        with self._transaction(_SNAPSHOT if snapshot else _NO_BEGIN) as conn:
            yield conn

    @contextmanager
    def inspecting(self) -> Iterator[Connection]:
        """A snapshot read that leaves the schema as it is (for reporting its revision)."""
        with self._transaction(_SNAPSHOT) as conn:
            yield conn

    @contextmanager
    def migrating(self) -> Iterator[Connection]:
        """One transaction holding the migration lock: of several processes opening the
        store at once, one migrates and the others wait, then find the work done."""
        with self._transaction(_MIGRATE) as conn:
            yield conn

    @contextmanager
    def _transaction(self, kind: str) -> Iterator[Connection]:
        writing = kind in (_WRITE, _MIGRATE)
        queued = self._writers if writing else None
        nowait = queued is not None and kind == _WRITE and _first_unwaiting()
        turn: AbstractContextManager[None] = nullcontext()
        if queued is not None:
            turn = queued.now() if nowait else queued
        with _translated(writing=writing), turn:
            conn, tx = self._begin(kind, nowait=nowait)
            try:
                try:
                    yield conn
                except BaseException:
                    _rollback(tx)
                    raise
                _commit(tx, writing=writing)
            finally:
                conn.close()

    def _begin(self, kind: str, *, nowait: bool = False) -> tuple[Connection, RootTransaction]:
        for attempt in (1, 2):
            conn = self._connect()
            try:
                tx = conn.begin()
                self._opener(conn, kind, nowait)  # (the kind is told here, not kept on conn)
                return conn, tx
            except WouldWait:
                conn.close()
                raise
            except DBAPIError as exc:
                conn.close()
                # Only the backend's opening statement (the writers' lock) was sent, none of
                # the caller's work: one more try on a fresh connection cannot apply it twice.
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except DBAPIError as exc:
            raise StoreError(
                f"cannot open the metadata store {self.display_url}: {_first_line(exc)}"
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _rollback(tx: RootTransaction) -> None:
    # If the connection is gone the server discards the transaction by itself, and the error
    # worth reporting is the one already propagating.
    with suppress(DBAPIError):
        tx.rollback()


def _commit(tx: RootTransaction, *, writing: bool) -> None:
    try:
        tx.commit()
    except DBAPIError as exc:
        if writing and exc.connection_invalidated:
            # COMMIT may have reached the server before the connection broke: the outcome is
            # unknown, so never claim either one (and never retry: that could apply it twice).
            raise StoreError(
                "lost the connection to the metadata store while committing; the change may "
                "or may not have been saved: check `modelvault audit list` before retrying"
            ) from exc
        raise


@contextmanager
def _translated(*, writing: bool = False) -> Iterator[None]:
    """Database failures become StoreError with one readable line; our own errors pass."""
    try:
        yield
    except ModelVaultError:
        raise
    except SAIntegrityError as exc:
        raise StoreError(f"the store refused a write: {_first_line(exc)}") from exc
    except DBAPIError as exc:
        raise StoreError(_explain(exc, writing=writing)) from exc


def _explain(exc: DBAPIError, *, writing: bool) -> str:
    line = _first_line(exc)
    state = getattr(exc.orig, "sqlstate", None)
    if exc.connection_invalidated:
        lost = f"lost the connection to the metadata store ({line})"
        if writing:  # the server never saw COMMIT, so it rolls the transaction back itself
            return f"{lost} before the change was committed; nothing was written; try again"
        return f"{lost}; try again"
    if state == "55P03" or (state is None and ("locked" in line or "busy" in line)):
        return _LOCKED
    if state in ("40001", "40P01"):
        return f"the change collided with a concurrent transaction ({line}); try again"
    return f"metadata store failed: {line}"


def _first_line(exc: DBAPIError) -> str:
    text_ = str(exc.orig) if exc.orig is not None else str(exc)
    return (text_.strip().splitlines() or [type(exc.orig).__name__])[0]


def _milliseconds(value: str, env: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= 3_600_000:
        raise InvalidInput(f"{env} must be a whole number of ms from 1 to 3600000, not {value!r}")
    return int(value)


class WriterQueue:
    """The writers of one SQLite file in this process, one at a time, in turn. Waiting longer
    than the busy timeout fails as SQLite's own wait does."""

    def __init__(self, wait_ms: int) -> None:
        self._lock = threading.Lock()
        self._wait_s = wait_ms / 1000
        self._counting = threading.Lock()
        self.waiting = 0  # writers queued behind the one writing

    def __enter__(self) -> None:
        with self._counting:
            self.waiting += 1
        try:
            acquired = self._lock.acquire(timeout=self._wait_s)
        finally:
            with self._counting:
                self.waiting -= 1
        if not acquired:
            raise StoreError(_LOCKED)

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextmanager
    def now(self) -> Iterator[None]:
        """This process's turn to write, if no other writer has it (else ``WouldWait``)."""
        if not self._lock.acquire(blocking=False):
            raise WouldWait
        try:
            yield
        finally:
            self._lock.release()

    def _reset(self) -> None:
        self._lock, self._counting, self.waiting = threading.Lock(), threading.Lock(), 0


class _Queues:
    """This process's writer queues, by SQLite file."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_file: dict[str, WriterQueue] = {}

    def get(self, url: str, settings: Settings) -> WriterQueue:
        """The one queue for the SQLite file at *url* (every store opened on the same file
        shares it, so their writers wait for each other here, not in SQLite)."""
        key = os.path.realpath(url[len("sqlite:///") :])
        with self.lock:
            queue = self.by_file.get(key)
            if queue is None:
                wait_ms = _milliseconds(settings.sqlite_busy_ms, "MODELVAULT_SQLITE_BUSY_MS")
                queue = self.by_file[key] = WriterQueue(wait_ms)
            return queue

    def after_fork(self) -> None:
        # a child of a fork has only the forking thread: a queue held by another thread of
        # the parent would never be let go there
        self.lock = threading.Lock()
        for queue in self.by_file.values():
            queue._reset()


_QUEUES = _Queues()
os.register_at_fork(after_in_child=_QUEUES.after_fork)


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise InvalidInput("an in-memory SQLite store is not supported; give a file path")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    synchronous = settings.sqlite_synchronous
    if synchronous not in {"FULL", "NORMAL"}:
        raise InvalidInput(
            f"MODELVAULT_SQLITE_SYNCHRONOUS must be FULL or NORMAL, not {synchronous!r}"
        )
    busy = _milliseconds(settings.sqlite_busy_ms, "MODELVAULT_SQLITE_BUSY_MS")
    engine = create_engine(
        f"sqlite+pysqlite:///{path}",
        connect_args={"timeout": busy / 1000, "check_same_thread": False},
        pool_size=4,
        max_overflow=8,
        pool_use_lifo=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy}")
        cur.close()

    return engine


def _sqlite_opener(busy_ms: int) -> Opener:
    def open_(conn: Connection, kind: str, nowait: bool) -> None:
        if kind == _NO_BEGIN:
            return
        # (on the driver's connection: through SQLAlchemy, a statement costs 3 to 6 times more)
        dbapi = cast(sqlite3.Connection, conn.connection.dbapi_connection)
        if nowait:
            _begin_now(dbapi, busy_ms)
        else:
            _sqlite_run(dbapi, "BEGIN IMMEDIATE" if kind in (_WRITE, _MIGRATE) else "BEGIN")

    return open_


def _sqlite_run(dbapi: sqlite3.Connection, statement: str) -> None:
    try:
        dbapi.execute(statement)
    except sqlite3.Error as exc:  # as SQLAlchemy would have raised it
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


def _begin_now(dbapi: sqlite3.Connection, busy_ms: int) -> None:
    """BEGIN IMMEDIATE without SQLite's wait: ``WouldWait`` when another process's writer
    holds the database."""
    _sqlite_run(dbapi, "PRAGMA busy_timeout=0")
    try:
        _sqlite_run(dbapi, "BEGIN IMMEDIATE")
    except DBAPIError as exc:
        if str(getattr(exc.orig, "sqlite_errorname", "")).startswith("SQLITE_BUSY"):
            raise WouldWait from None
        raise
    finally:
        _sqlite_run(dbapi, f"PRAGMA busy_timeout={busy_ms}")


_POSTGRES_DRIVERS = {"postgres", "postgresql", "postgresql+psycopg"}
_PG_LOCK_WRITERS = "SELECT seq, hash FROM mv_audit_head WHERE id = 1 FOR UPDATE"
# Keyed by schema, so registries in different schemas of one database never wait on each other.
_PG_LOCK_MIGRATIONS = (
    "SELECT pg_advisory_xact_lock(1836480109, hashtext(coalesce(current_schema(), '')))"
)


def _postgres_engine(url: str, settings: Settings) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"invalid PostgreSQL URL: {exc}", field="db") from None
    if parsed.drivername not in _POSTGRES_DRIVERS:
        raise InvalidInput(
            f"unsupported PostgreSQL driver {parsed.drivername!r}: modelvault uses psycopg 3; "
            "write postgresql://... or postgresql+psycopg://...",
            field="db",
        )
    lock_ms = _milliseconds(settings.pg_lock_timeout_ms, "MODELVAULT_PG_LOCK_TIMEOUT_MS")
    try:
        import psycopg  # noqa: F401  (missing: one clear line now, not at the first statement)
    except ImportError:
        raise StoreError(
            "a PostgreSQL store needs the psycopg driver: pip install 'modelvault[postgres]'"
        ) from None
    query = {k: " ".join(v) if isinstance(v, tuple) else v for k, v in parsed.query.items()}
    # Set once per session: a writer queueing behind another gives up after lock_timeout.
    query["options"] = f"{query.get('options', '')} -c lock_timeout={lock_ms}".strip()
    engine = create_engine(
        parsed.set(drivername="postgresql+psycopg", query=query),
        connect_args={} if "connect_timeout" in query else {"connect_timeout": 10},
        pool_size=4,
        max_overflow=8,
    )
    # A many-row INSERT (a version's blobs, a batch of run metrics, imported events) goes as
    # one multi-row statement, as SQLAlchemy does for psycopg2, rather than psycopg 3's
    # executemany, which converts and sends row by row in Python.
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # A pooled connection the server dropped (restart, failover, an administrator's
        # pg_terminate_backend) is replaced before use: an idle connection has nothing to
        # read unless the server said goodbye or hung up. One poll of its socket instead of
        # SQLAlchemy's pre-ping round trip (≈ 0.1 ms of a 1.8 ms `get` here); the pool
        # discards the connection on DisconnectionError and checks out another.
        # (poll, not select: select refuses descriptors past 1023, which a busy server has)
        waiting = select.poll()
        waiting.register(dbapi_conn.fileno(), select.POLLIN)
        if waiting.poll(0):
            raise DisconnectionError("the server closed this pooled connection")

    return engine


def _postgres_open(conn: Connection, kind: str, nowait: bool) -> None:
    import psycopg

    conn.info.pop(LOCKED_HEAD, None)  # (the info is the DBAPI connection's: it stays)
    dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    dbapi.autocommit = kind == _NO_BEGIN
    if dbapi.autocommit:
        return
    # Writers must see every commit made before their lock was granted: repeatable read
    # would keep the snapshot taken while they queued for it.
    levels = psycopg.IsolationLevel
    dbapi.isolation_level = levels.REPEATABLE_READ if kind == _SNAPSHOT else levels.READ_COMMITTED
    if kind == _WRITE:
        # the head comes with the lock: the writer's first event needs no statement of
        # its own to read it (one round trip less per write)
        conn.info[LOCKED_HEAD] = conn.exec_driver_sql(_PG_LOCK_WRITERS).one()
    elif kind == _MIGRATE:
        conn.exec_driver_sql("SET LOCAL lock_timeout = 0")  # wait as long as it takes
        conn.exec_driver_sql(_PG_LOCK_MIGRATIONS)


_FACTORIES: dict[str, Callable[[str, Settings], Engine]] = {
    "sqlite": _sqlite_engine,
    "postgresql": _postgres_engine,
    "postgres": _postgres_engine,
}


def open_metadata_store(url: str, settings: Settings) -> MetadataStore:
    scheme = url_scheme(url)
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise InvalidInput(
            f"unsupported metadata store URL scheme {scheme!r}; supported: "
            + ", ".join(sorted(_FACTORIES)),
            field="db",
        )
    engine = factory(url, settings)
    schema.use_dialect(engine.dialect.name)
    if engine.dialect.name == "sqlite":
        busy = _milliseconds(settings.sqlite_busy_ms, "MODELVAULT_SQLITE_BUSY_MS")
        opener, writers = _sqlite_opener(busy), _QUEUES.get(url, settings)
        return MetadataStore(engine, url=url, opener=opener, writers=writers)
    return MetadataStore(engine, url=url, opener=_postgres_open)
