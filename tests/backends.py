"""The metadata backends the suite runs against: SQLite files, and PostgreSQL through one
throwaway schema per test (selected by search_path), so tests run in parallel in one database.

PostgreSQL comes from ``MODELVAULT_TEST_POSTGRES_URL``; when it is unreachable the tests
fail, loudly.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, make_url

from modelvault import Registry, Settings
from modelvault.store.engine import open_metadata_store

PG_URL = os.environ.get("MODELVAULT_TEST_POSTGRES_URL") or "postgresql://root@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
_unreachable: list[str] = []


def _admin() -> Any:
    import psycopg

    if _unreachable:
        pytest.fail(_unreachable[0], pytrace=False)
    conninfo = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        _unreachable.append(
            f"PostgreSQL at {PG_URL} is unreachable ({first}): start it with "
            "tests/ensure_postgres.sh, or point MODELVAULT_TEST_POSTGRES_URL at a server"
        )
        pytest.fail(_unreachable[0], pytrace=False)


# The system catalogs a schema's tables, indexes and constraints put rows in.
CATALOGS = ("pg_attribute", "pg_depend", "pg_class", "pg_type", "pg_index", "pg_constraint")


def vacuum_catalogs_without_autovacuum() -> bool:
    """Where the server runs without autovacuum (this machine's does), clear the dead catalog
    rows that earlier runs' throwaway schemas left (each PostgreSQL test creates and drops
    a schema of ~40 tables): with millions of them, creating a schema took 0.2 s longer and every
    PostgreSQL test paid for it. True when it vacuumed; quiet when the server is away (the
    tests that need it say so)."""
    import psycopg

    conninfo = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as admin:
            row = admin.execute("SHOW autovacuum").fetchone()
            if row is None or row[0] == "on":
                return False
            admin.execute("VACUUM " + ", ".join(f"pg_catalog.{t}" for t in CATALOGS))
            return True
    except psycopg.Error:
        return False


def schema_url(schema: str) -> str:
    """PG_URL with every connection's search_path (and application_name) set to *schema*."""
    url = make_url(PG_URL).update_query_dict(
        {"options": f"-csearch_path={schema}", "application_name": schema}
    )
    return url.render_as_string(hide_password=False)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema and a store URL using it; dropped afterwards."""
    name = f"mvt_{uuid.uuid4().hex[:16]}"
    with _admin() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield schema_url(name)
    finally:
        with _admin() as admin:
            # a connection a test left open would hold locks the DROP waits for
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def store_url(backend: str, home: Any) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{home / 'registry.db'}"
    else:
        with pg_schema() as url:
            yield url


def engine_for(url: str) -> Engine:
    """A plain engine on a store URL (any backend), for tests that look under the hood."""
    return open_metadata_store(url, Settings.from_env(env={})).engine


@contextmanager
def raw_db(reg: Registry) -> Iterator[Connection]:
    """Someone with write access to *reg*'s database itself (SQLite or PostgreSQL): one
    transaction, committed when the block ends."""
    engine = engine_for(reg.settings.db)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def terminate(pid: int) -> None:
    """Kill one PostgreSQL backend from another connection, and wait until it is gone."""
    with _admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(500):
            row = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            if row.fetchone() is None:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} did not exit")
