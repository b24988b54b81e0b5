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
    before, after = data["workloads"]["registry"]["load_average"]  # figures carry their load
    assert before >= 0 and after >= 0
    assert "load average (1 min) before, after" in out


def test_quick_gateway_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "gateway"]) == 0
    data = json.loads((RESULTS / "bench.json").read_text())
    figures = data["workloads"]["gateway"]["figures"]
    assert figures["rollback_failed_requests"] == 0 and figures["rollback_requests"] > 0
    assert figures["saturation_per_s"] > 0 and figures["direct_p50_ms"] > 0
    assert "rollback_to_all_traffic_s" in capsys.readouterr().out


def test_quick_audit_benchmark_runs() -> None:
    assert main(["--quick", "audit"]) == 0
    data = json.loads((RESULTS / "bench.json").read_text())
    figures = data["workloads"]["audit"]["figures"]
    assert all(value is not None and value > 0 for value in figures.values())


def test_quick_server_benchmark_runs() -> None:
    assert main(["--quick", "server", "server-pg"]) == 0
    data = json.loads((RESULTS / "bench.json").read_text())
    for workload in ("server", "server-pg"):
        figures = data["workloads"][workload]["figures"]
        assert figures and all(value is not None and value > 0 for value in figures.values())
    assert data["workloads"]["server"]["figures"]["download_mb_s"] > 0
