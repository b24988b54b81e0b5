"""One table from exception to message and exit code; no traceback reaches a user for a
known error."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import GateFailed, ModelVaultError

EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130

# (class name, exit code, what it means) -- documented in docs/cli.md; a test keeps both in step.
EXIT_CODES: tuple[tuple[str, int, str], ...] = (
    ("InvalidInput", 2, "the input was malformed (names, paths, values, references, queries)"),
    ("NotFound", 3, "the project, model, version, alias or blob does not exist"),
    ("AlreadyExists", 4, "the name or approval exists already"),
    ("Conflict", 5, "the state does not allow it (illegal transition, alias moved, ...)"),
    ("Forbidden", 6, "the actor may not do this (e.g. approving their own version)"),
    ("GateFailed", 7, "a promotion rule blocked it (e.g. missing approvals)"),
    ("IntegrityError", 8, "stored bytes or the audit chain do not verify"),
    ("StoreError", 9, "the store failed (disk full, database locked too long)"),
    ("Unauthenticated", 10, "the token is missing, malformed, unknown, expired or revoked"),
)


def describe(exc: BaseException) -> tuple[str, int, dict[str, Any]]:
    """The one line to print, the exit code and the JSON envelope for an exception."""
    if isinstance(exc, ModelVaultError):
        line = exc.message
        pointer = getattr(exc, "pointer", None)
        if callable(pointer):
            line = f"{line}\n{pointer()}"
        rules = exc.fields.get("rules") if isinstance(exc, GateFailed) else None
        if rules:
            from .render_tracking import gate_text

            line = f"{line}\n{gate_text(rules)}"
        return line, exc.exit_code, {"error": exc.to_dict()}
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED, {"error": {"code": "interrupted"}}
    if isinstance(exc, OSError):
        line = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        return line, 9, {"error": {"code": "os_error", "message": line}}
    line = f"internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it"
    return line, EXIT_INTERNAL, {"error": {"code": "internal", "message": str(exc)}}


def print_error(line: str) -> None:
    sys.stderr.write(f"error: {line}\n")
