"""The metadata store: a SQLAlchemy engine chosen by URL, and the two kinds of transaction.

``write()`` opens the single unit of work a state change runs in (SQLite: BEGIN IMMEDIATE, so
writers queue instead of failing mid-transaction); ``read()`` opens a consistent snapshot.
Backends are picked from one table keyed by URL scheme.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from ..errors import InvalidInput, ModelVaultError, StoreError
from ..settings import Settings
from . import schema

_WRITE = "mv_write"
_NO_BEGIN = "mv_no_begin"
GENESIS_HASH = "0" * 64


class MetadataStore:
    """Owns the engine; every use-case borrows a connection through read() or write()."""

    def __init__(self, engine: Engine, *, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._ready = False

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self.engine.connect() as raw:
            conn = raw.execution_options(**{_WRITE: True})
            with conn.begin():
                schema.metadata.create_all(conn)
                head = conn.execute(select(schema.audit_head.c.id)).first()
                if head is None:
                    conn.execute(schema.audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH))
                    conn.execute(
                        schema.meta.insert().values(
                            key="schema_version", value=str(schema.SCHEMA_VERSION)
                        )
                    )
        self._ready = True

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One atomic unit of work: state rows and their audit events commit together."""
        self.ensure_schema()
        with _translated(), self.engine.connect() as raw:
            conn = raw.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def read(self, *, snapshot: bool = True) -> Iterator[Connection]:
        """A read; with ``snapshot=False`` no transaction is opened, which is right (and
        cheaper) for a single statement."""
        self.ensure_schema()
        with _translated(), self.engine.connect() as raw:
            conn = raw if snapshot else raw.execution_options(**{_NO_BEGIN: True})
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translated() -> Iterator[None]:
    """Database failures become StoreError with one readable line; our own errors pass."""
    try:
        yield
    except ModelVaultError:
        raise
    except SAIntegrityError as exc:
        raise StoreError(f"the store refused a write: {_first_line(exc)}") from exc
    except OperationalError as exc:
        text = _first_line(exc)
        if "locked" in text or "busy" in text:
            raise StoreError(
                "the registry database stayed locked by another writer for too long; try again"
            ) from exc
        raise StoreError(f"metadata store failed: {text}") from exc
    except DBAPIError as exc:
        raise StoreError(f"metadata store failed: {_first_line(exc)}") from exc


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]


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
    busy = settings.sqlite_busy_ms
    if not busy.isdigit() or not 0 < int(busy) <= 3_600_000:
        raise InvalidInput(
            f"MODELVAULT_SQLITE_BUSY_MS must be a whole number of ms from 1 to 3600000, "
            f"not {busy!r}"
        )
    engine = create_engine(
        f"sqlite+pysqlite:///{path}",
        connect_args={"timeout": int(busy) / 1000, "check_same_thread": False},
        pool_size=4,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_NO_BEGIN):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE) else "BEGIN")

    return engine


_FACTORIES: dict[str, Callable[[str, Settings], Engine]] = {
    "sqlite": _sqlite_engine,
}


def open_metadata_store(url: str, settings: Settings) -> MetadataStore:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise InvalidInput(
            f"unsupported metadata store URL scheme {scheme!r}; supported: "
            + ", ".join(sorted(_FACTORIES)),
            field="db",
        )
    return MetadataStore(factory(url, settings), url=url)
