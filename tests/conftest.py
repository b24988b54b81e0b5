"""Shared fixtures: a real registry per test (local blobs), on each metadata backend: a SQLite
file, and a throwaway PostgreSQL schema.

Modules marked ``contract`` (the core registry's contract suite) also run every test through
a real server on loopback with the remote SDK: local+SQLite, local+PostgreSQL, remote+SQLite
and remote+PostgreSQL with S3 blobs (moto on loopback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelvault import Registry, Settings

from .backends import BACKENDS, store_url, vacuum_catalogs_without_autovacuum
from .clitool import CLI
from .s3_fixtures import aws_env, moto_endpoint, s3_bucket, s3_store

if TYPE_CHECKING:
    from .server_fixtures import LiveServer

__all__ = ["aws_env", "moto_endpoint", "s3_bucket", "s3_store"]


class FakeClock:
    """A clock the test moves by hand; starts at a fixed time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "mvhome"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, home: Path) -> Iterator[str]:
    with store_url(backend, home) as url:
        yield url


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # once per run, not per xdist worker
        vacuum_catalogs_without_autovacuum()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mode" in metafunc.fixturenames and metafunc.definition.get_closest_marker("contract"):
        metafunc.parametrize("mode", ["local", "remote"])


@pytest.fixture
def mode() -> str:
    """``local`` unless the test is in the contract suite, which runs both."""
    return "local"


@pytest.fixture
def settings(
    home: Path, db_url: str, mode: str, backend: str, request: pytest.FixtureRequest
) -> Settings:
    env = {"MODELVAULT_DB": db_url}
    if mode == "remote" and backend == "postgresql":
        from .s3_helpers import s3_env

        env |= s3_env(
            request.getfixturevalue("moto_endpoint"), request.getfixturevalue("s3_bucket")
        )
    return Settings.from_env(env=env, home=home, actor="alice")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def as_user(settings: Settings, clock: FakeClock, mode: str) -> Iterator[Callable[[str], Registry]]:
    """Open the same registry as another person (through the server in remote mode)."""
    opened: list[Registry] = []
    with ExitStack() as stack:
        server = None
        if mode == "remote":
            from .server_fixtures import live_server

            server = stack.enter_context(live_server(settings, clock))

        def open_as(actor: str) -> Registry:
            if server is not None:
                reg = server.client(actor, settings=settings)
            else:
                reg = Registry(settings=settings, actor=actor, clock=clock)
            opened.append(reg)
            return reg

        yield open_as
        for reg in opened:
            reg.close()


@pytest.fixture
def reg(as_user: Callable[[str], Registry]) -> Registry:
    return as_user("alice")


@pytest.fixture
def server(settings: Settings, clock: FakeClock) -> Iterator[LiveServer]:
    """A modelvault server on this test's store, in process, over loopback."""
    from .server_fixtures import live_server

    with live_server(settings, clock) as live:
        yield live


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (d / "sub" / "config.json").write_text('{"layers": 3}')
    return d


def write_model(tmp_path: Path, name: str, content: bytes) -> Path:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.bin").write_bytes(content)
    return d


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path, db_url: str
) -> CLI:
    runner = CLI(capsys, monkeypatch, home)
    monkeypatch.setenv("MODELVAULT_DB", db_url)
    return runner
