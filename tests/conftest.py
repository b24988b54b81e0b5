"""Shared fixtures: a real registry per test (local blobs), on each metadata backend: a SQLite
file, and a throwaway PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelvault import Registry, Settings

from .backends import BACKENDS, store_url
from .clitool import CLI


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


@pytest.fixture
def settings(home: Path, db_url: str) -> Settings:
    return Settings.from_env(env={"MODELVAULT_DB": db_url}, home=home, actor="alice")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def as_user(settings: Settings, clock: FakeClock) -> Iterator[Callable[[str], Registry]]:
    """Open the same registry as another person."""
    opened: list[Registry] = []

    def open_as(actor: str) -> Registry:
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
