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
    assert "batch_points_per_s" in out
    data = json.loads((RESULTS / "bench.json").read_text())
    for workload in ("registry", "snapshot"):
        figures = data["workloads"][workload]["figures"]
        assert all(value is not None and value > 0 for value in figures.values()), workload
    metrics = data["workloads"]["metrics"]["figures"]
    assert metrics["batch_points_per_s"] > 0 and metrics["loop_blocked_percent"] >= 0
    assert data["machine"]["python"]
