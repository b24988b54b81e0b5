"""Running the CLI in process, as a user would, with the environment a test sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelvault.cli import main


class CLI:
    def __init__(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path
    ) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        for var in ("MODELVAULT_DB", "MODELVAULT_BLOBS", "MODELVAULT_PROJECT"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("MODELVAULT_HOME", str(home))
        monkeypatch.setenv("MODELVAULT_ACTOR", "alice")

    def run(self, *args: str, actor: str | None = None) -> tuple[int, str, str]:
        if actor:
            self.monkeypatch.setenv("MODELVAULT_ACTOR", actor)
        try:
            code = main(list(args))
        finally:
            self.monkeypatch.setenv("MODELVAULT_ACTOR", "alice")
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str, actor: str | None = None) -> Any:
        code, out, err = self.run(*args, "--json", actor=actor)
        assert code == 0, err
        return json.loads(out)
