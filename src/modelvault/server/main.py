"""Start ``modelvault server``: open (or create) the registry, print the admin token on the
first start, and serve until stopped.

The console command dispatches ``modelvault [--home H] server [--host A] [--port P]`` here
without loading the Typer/Rich command tree (docs/server.md: ready within 1 s of starting).
"""

from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..registry import Registry

SERVER_OPTIONS = ("--host", "--port")
GLOBAL_OPTIONS = ("--home", "--actor", "--project", "-p")


def serve(home: Path | None, host: str = "127.0.0.1", port: int = 7310) -> None:
    """Serve the registry at *home* (MODELVAULT_HOME or the default when None)."""
    # Loading the web stack allocates a few hundred thousand long-lived objects and next to
    # no garbage (< 1,000 objects in cycles), yet the cyclic collector ran ~240 times over
    # them, ~0.1 s of the start. It stays off until the app is built; the objects then are
    # frozen (never scanned again, which also keeps later full collections short).
    from .memory import keep_freed_memory

    keep_freed_memory()  # before any body arrives: see memory.py
    gc.disable()
    try:
        api, token = _open(home)
    finally:
        gc.freeze()
        gc.enable()
    if token is not None:
        _message("first start: created user admin; its token (shown only this once):")
        print(token, flush=True)
    _message(f"modelvault server on http://{host}:{port}/api/v1 (docs at /api/v1/docs)")
    import uvicorn

    from .protocol import uvicorn_options

    uvicorn.run(api, host=host, port=port, **uvicorn_options())


def _open(home: Path | None) -> tuple[FastAPI, str | None]:
    """The app over the registry at *home*, migrated, and the admin's token on a first start."""
    from ..registry import Registry
    from ..service.identity import bootstrap_admin
    from ..settings import Settings
    from ..store import migrate  # noqa: F401  (loaded here, not by the thread below)

    settings = Settings.from_env(home=home) if home else Settings.from_env()
    registry = Registry(settings=settings)
    migrating = _Migrating(registry) if registry._ctx.store.dialect != "sqlite" else None
    import uvicorn  # noqa: F401  (loaded with the rest, before the collector is back on)

    from .app import create_app

    api = create_app(settings, migrate=migrating is None, registry=registry)
    if migrating is not None:
        migrating.wait()
    return api, bootstrap_admin(registry._ctx)


class _Migrating:
    """A database server's schema migrated in a thread (creating a new schema is ~0.1-0.5 s
    of the database's own work, one round trip) while this one loads the web stack."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelvault-migrate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._registry.upgrade_schema()
        except BaseException as exc:  # raised again by wait(), in the starting thread
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _message(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def parse(args: list[str]) -> tuple[Path | None, str, int] | None:
    """(home, host, port) when *args* are a plain ``server`` invocation (global options the
    server ignores, ``--actor``/``--project``, are accepted), else None: anything else
    (help, unknown options, a port that is not a number) is left to the full CLI, which
    answers it with its usual messages."""
    home: Path | None = None
    host, port = "127.0.0.1", 7310
    options = dict.fromkeys(GLOBAL_OPTIONS)
    seen_command = False
    i = 0
    while i < len(args):
        arg = args[i]
        if not seen_command and arg == "server":
            seen_command = True
            options = dict.fromkeys(SERVER_OPTIONS)
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name not in options or not name.startswith("-") or (name == "-p" and eq):
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        i += 1
        if name == "--home":
            if not value:
                return None
            home = Path(value)
        elif name == "--host":
            host = value
        elif name == "--port":
            if not value.isascii() or not value.isdigit():
                return None
            port = int(value)
    return (home, host, port) if seen_command else None
