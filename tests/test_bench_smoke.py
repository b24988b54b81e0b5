"""The benchmark harness runs (at its smallest sizes), so it cannot rot between uses."""

from __future__ import annotations

import json
import os

import pytest

from bench.harness import RESULTS
from bench.run import main


def test_quick_benchmark_produces_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    cwd = os.getcwd()
    assert main(["--quick", "registry", "snapshot", "metrics"]) == 0
    assert os.getcwd() == cwd
    out = capsys.readouterr().out
    assert "register_per_s" in out and "snapshot_cold_s" in out
    assert "not built yet" in out  # metrics waits for run tracking, and says so
    data = json.loads((RESULTS / "bench.json").read_text())
    figures = data["workloads"]["registry"]["figures"]
    assert all(value is not None and value > 0 for value in figures.values())
    assert data["machine"]["python"]
