"""The public surface: a sorted __all__, every name importable, and a light import."""

from __future__ import annotations

import subprocess
import sys

import modelvault


def test_all_is_sorted_and_importable() -> None:
    assert modelvault.__all__ == sorted(modelvault.__all__)
    for name in modelvault.__all__:
        assert getattr(modelvault, name) is not None


def test_import_does_not_load_the_heavy_stack() -> None:
    code = (
        "import sys, modelvault, modelvault.errors, modelvault.refs;"
        "heavy = [m for m in ('sqlalchemy', 'typer', 'rich', 'sklearn') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_version_flag_does_not_load_the_cli_stack() -> None:
    code = (
        "import sys; from modelvault.cli import main; main(['--version']);"
        "print('typer' in sys.modules or 'sqlalchemy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[-1] == "False"
