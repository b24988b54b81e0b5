"""PostgreSQL faults: the server drops the connection in the middle of a write transaction or
while committing, drops idle pooled connections, or another session holds the writers' lock.
The operation fails with one clear line (or waits), and nothing is half-written."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, event

from modelvault import Registry, Settings, StoreError

from ..backends import pg_schema, terminate
from .invariants import check_store


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with pg_schema() as url:
        yield tmp_path / "home", url


def _registry(home: Path, url: str, **env: str) -> Registry:
    env = {"MODELVAULT_DB": url, **env}
    return Registry(settings=Settings.from_env(env=env, home=home, actor="alice"))


def _model(home: Path, name: str = "m.bin") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home.parent / name
    path.write_bytes(b"weights " + name.encode())
    return path


def _pid(conn: Connection) -> int:
    dbapi: Any = conn.connection.dbapi_connection
    return int(dbapi.info.backend_pid)


def _kill_when(reg: Registry, hook: str, wanted: Callable[[Any], bool]) -> list[int]:
    """Terminate the session at the first *hook* event *wanted* picks (once)."""
    killed: list[int] = []

    def before_cursor_execute(conn: Connection, _c: Any, sql: str, params: Any, *_: Any) -> None:
        if not killed and wanted((sql, params)):
            killed.append(_pid(conn))
            terminate(killed[0])

    def commit(conn: Connection) -> None:
        if not killed and wanted(conn):
            killed.append(_pid(conn))
            terminate(killed[0])

    listener = before_cursor_execute if hook == "before_cursor_execute" else commit
    event.listen(reg._ctx.store.engine, hook, listener)
    return killed


def test_connection_dropped_mid_registration_writes_nothing(pg: tuple[Path, str]) -> None:
    home, url = pg
    reg = _registry(home, url)
    reg.init()
    src = _model(home)

    # after the version row, before its audit event
    def at_event(call: Any) -> bool:
        sql, params = call
        return "INSERT INTO mv_audit_events" in sql and params["action"] == "version.register"

    killed = _kill_when(reg, "before_cursor_execute", at_event)
    with pytest.raises(StoreError) as info:
        reg.register("m", src, capture_code=False, capture_environment=False)
    assert killed, "the hook never fired"
    message = info.value.message
    assert "\n" not in message
    assert "lost the connection" in message and "nothing was written" in message
    assert reg.models() == []  # a fresh connection replaced the dead one
    check_store(home, db=url)
    assert reg.register("m", src, capture_code=False, capture_environment=False).number == 1
    assert reg.verify_audit().ok
    reg.close()
    check_store(home, db=url)


def test_connection_dropped_before_the_transaction_began_is_retried(
    pg: tuple[Path, str],
) -> None:
    home, url = pg
    reg = _registry(home, url)
    reg.init()
    src = _model(home)
    killed: list[int] = []

    def checked_out(conn: Connection) -> None:  # after the pool's liveness check
        if not killed:
            killed.append(_pid(conn))
            terminate(killed[0])

    event.listen(reg._ctx.store.engine, "engine_connect", checked_out)
    # the writers' lock was the only statement sent, so a fresh connection may try again
    assert reg.register("m", src, capture_code=False, capture_environment=False).number == 1
    assert killed
    reg.close()
    check_store(home, db=url)


def test_connection_dropped_while_committing_fails_honestly(pg: tuple[Path, str]) -> None:
    home, url = pg
    reg = _registry(home, url)
    reg.init()
    src = _model(home)
    reg.register("m", src, capture_code=False, capture_environment=False)
    killed = _kill_when(reg, "commit", lambda _conn: True)
    with pytest.raises(StoreError, match="while committing; the change may or may not"):
        reg.set_alias("m", "champion", "1")
    assert killed
    # this time COMMIT never left the client, so the store must show no trace of it
    assert reg.alias_history("m") == []
    assert [e.action for e in reg.audit()][-1] == "version.register"
    reg.close()
    check_store(home, db=url)


def test_idle_pooled_connections_dropped_by_the_server_are_replaced(
    pg: tuple[Path, str],
) -> None:
    home, url = pg
    reg = _registry(home, url)
    src = _model(home)
    reg.register("m", src, capture_code=False, capture_environment=False)
    with psycopg.connect(url_for_psycopg(url), autocommit=True) as admin:
        pids = [
            r[0]
            for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = "
                "current_setting('application_name') AND pid <> pg_backend_pid()"
            )
        ]
    assert pids, "the registry should keep a pooled connection"
    for pid in pids:
        terminate(pid)
    assert reg.get("m:1").number == 1  # a server restart or failover looks like this
    assert reg.register("m", src, capture_code=False, capture_environment=False).number == 2
    reg.close()
    check_store(home, db=url)


def test_pooled_connections_are_checked_past_descriptor_1023(pg: tuple[Path, str]) -> None:
    # a busy server holds many descriptors: the check of a pooled connection must not be
    # one (select) that refuses those past 1023
    import os

    home, url = pg
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        reg = _registry(home, url)
        src = _model(home)
        with reg._ctx.store.read() as conn:
            assert conn.connection.dbapi_connection.fileno() > 1023  # type: ignore[union-attr]
        assert reg.register("m", src, capture_code=False, capture_environment=False).number == 1
        assert reg.get("m:1").number == 1
        reg.close()
    finally:
        for fd in held:
            os.close(fd)


def url_for_psycopg(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _hold_writers_lock(url: str, seconds: float, held: threading.Event) -> None:
    with psycopg.connect(url_for_psycopg(url)) as conn:
        conn.execute("SELECT seq FROM mv_audit_head WHERE id = 1 FOR UPDATE")
        held.set()
        time.sleep(seconds)
        conn.rollback()


def test_writers_lock_held_too_long_fails_clearly(pg: tuple[Path, str]) -> None:
    home, url = pg
    reg = _registry(home, url, MODELVAULT_PG_LOCK_TIMEOUT_MS="300")
    reg.init()
    src = _model(home)
    held = threading.Event()
    locker = threading.Thread(target=_hold_writers_lock, args=(url, 2.0, held))
    locker.start()
    held.wait()
    with pytest.raises(StoreError, match="stayed locked by another writer"):
        reg.register("m", src, capture_code=False, capture_environment=False)
    locker.join()
    assert reg.models() == []
    reg.close()
    check_store(home, db=url)


def test_writers_wait_for_a_short_lock(pg: tuple[Path, str]) -> None:
    home, url = pg
    reg = _registry(home, url)
    reg.init()
    src = _model(home)
    held = threading.Event()
    locker = threading.Thread(target=_hold_writers_lock, args=(url, 0.5, held))
    locker.start()
    held.wait()
    started = time.perf_counter()
    assert reg.register("m", src, capture_code=False, capture_environment=False).number == 1
    assert time.perf_counter() - started >= 0.3  # it queued behind the other writer
    locker.join()
    reg.close()
    check_store(home, db=url)
