"""Every setting modelvault reads, declared once: name, default, environment variable, help.

Nothing else in the package reads ``os.environ``; a test keeps docs/configuration.md in step
with this table.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("home", "MODELVAULT_HOME", "~/.modelvault", "Directory holding the embedded store."),
    Setting(
        "db",
        "MODELVAULT_DB",
        "sqlite:///$MODELVAULT_HOME/registry.db",
        "Metadata store URL (sqlite:///PATH).",
    ),
    Setting(
        "blobs",
        "MODELVAULT_BLOBS",
        "file://$MODELVAULT_HOME/blobs",
        "Blob store URL (file:///PATH, memory://).",
    ),
    Setting("actor", "MODELVAULT_ACTOR", "the OS user", "Who is acting, as written in the audit."),
    Setting("project", "MODELVAULT_PROJECT", "default", "Project used when a reference has none."),
    Setting(
        "policy",
        "MODELVAULT_POLICY",
        "$MODELVAULT_HOME/policy.toml",
        "Promotion policy file (docs/policy.md).",
    ),
    Setting(
        "sqlite_synchronous",
        "MODELVAULT_SQLITE_SYNCHRONOUS",
        "FULL",
        "SQLite synchronous pragma: FULL (durable on power loss) or NORMAL (faster).",
    ),
    Setting(
        "sqlite_busy_ms",
        "MODELVAULT_SQLITE_BUSY_MS",
        "60000",
        "How long a writer waits for another writer's lock before failing, in ms.",
    ),
)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db: str
    blobs: str
    actor: str
    project: str
    policy: Path
    sqlite_synchronous: str = "FULL"
    sqlite_busy_ms: str = "60000"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | Path) -> Settings:
        source = os.environ if env is None else env
        home = Path(str(overrides.get("home") or source.get("MODELVAULT_HOME") or "~/.modelvault"))
        home = home.expanduser().absolute()
        settings = cls(
            home=home,
            db=source.get("MODELVAULT_DB") or f"sqlite:///{home / 'registry.db'}",
            blobs=source.get("MODELVAULT_BLOBS") or f"file://{home / 'blobs'}",
            actor=source.get("MODELVAULT_ACTOR") or _os_user(),
            project=source.get("MODELVAULT_PROJECT") or "default",
            policy=Path(source.get("MODELVAULT_POLICY") or home / "policy.toml"),
            sqlite_synchronous=(source.get("MODELVAULT_SQLITE_SYNCHRONOUS") or "FULL").upper(),
            sqlite_busy_ms=source.get("MODELVAULT_SQLITE_BUSY_MS") or "60000",
        )
        rest = {k: v for k, v in overrides.items() if k != "home" and v is not None}
        return replace(settings, **rest) if rest else settings  # type: ignore[arg-type]
