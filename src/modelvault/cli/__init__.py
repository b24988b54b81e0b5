"""The ``modelvault`` console command."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # answer without importing the CLI stack
        from .._version import __version__

        print(f"modelvault {__version__}")
        return 0
    if "server" in args:  # start the server without importing the CLI stack
        from ..server.main import parse

        served = parse(args)
        if served is not None:
            return _serve(*served)
    from .runner import run

    return run(args)


def _serve(home: Path | None, host: str, port: int) -> int:
    from ..server.main import serve
    from .errors import describe, print_error

    try:
        serve(home, host, port)
    except BaseException as exc:  # as the CLI's runner: one line and the exit code
        if isinstance(exc, SystemExit):
            raise
        line, code, _ = describe(exc)
        print_error(line)
        return code
    return 0
