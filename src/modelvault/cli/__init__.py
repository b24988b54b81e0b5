"""The ``modelvault`` console command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # answer without importing the CLI stack
        from .._version import __version__

        print(f"modelvault {__version__}")
        return 0
    from .runner import run

    return run(args)
