"""Runs the Typer app and turns every known error into one line and its exit code."""

from __future__ import annotations

import json
import sys

import typer

from .errors import describe, print_error


def run(args: list[str]) -> int:
    from .app import app, state

    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        # without standalone mode, click returns the code of a typer.Exit instead of raising
        returned = app(args=args, prog_name="modelvault", standalone_mode=False)
        if isinstance(returned, int) and returned:
            return returned
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print_error("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: Typer prints them with the usage line
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print_error(exc.message)
        return int(exc.exit_code)
    except BaseException as exc:  # the one place every failure is turned into a message
        if debug or isinstance(exc, SystemExit):
            raise
        line, code, envelope = describe(exc)
        if "--json" in args:
            sys.stdout.write(json.dumps(envelope, default=str) + "\n")
        print_error(line)
        return code
    finally:
        if state.registry is not None:
            state.registry.close()
            state.registry = None
    return 0
