"""Generates docs/cli-reference.md from the command tree, so the reference cannot drift.

``python -m modelvault.cli.docgen > docs/cli-reference.md`` (``make docs``); a test compares.
"""

from __future__ import annotations

from typing import Any

import typer

from .app import app


def _param_line(param: Any) -> str:
    if param.param_type_name == "argument":
        name = param.name.upper()
        need = "required" if param.required else "optional"
        return f"| `{name}` | argument, {need} | {getattr(param, 'help', '') or ''} |"
    opts = ", ".join(f"`{o}`" for o in param.opts)
    default = param.default
    shown = "" if default in (None, False, [], ()) else f" (default: `{default}`)"
    kind = "flag" if getattr(param, "is_flag", False) else "option"
    if getattr(param, "multiple", False):
        kind += ", repeatable"
    return f"| {opts} | {kind}{shown} | {getattr(param, 'help', '') or ''} |"


def _command(path: str, cmd: Any, out: list[str]) -> None:
    subcommands = getattr(cmd, "commands", None)
    if subcommands:
        if path:
            out += [f"## `modelvault {path}`", "", (cmd.help or "").strip(), ""]
        for name in sorted(subcommands):
            _command(f"{path} {name}".strip(), subcommands[name], out)
        return
    out += [f"## `modelvault {path}`", "", (cmd.help or "").strip(), ""]
    params = [p for p in cmd.params if p.name != "help"]
    if params:
        out += ["| parameter | kind | help |", "|---|---|---|"]
        out += [_param_line(p) for p in params]
        out.append("")


def generate() -> str:
    root = typer.main.get_command(app)
    out = [
        "# CLI reference",
        "",
        "Generated from the command tree by `make docs`; a test fails when it drifts.",
        "Global options (before the command): `--actor`, `--project`/`-p`, `--home`,",
        "`--version`, `--debug` (show tracebacks). Every command takes `--json`.",
        "",
    ]
    _command("", root, out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(generate(), end="")
