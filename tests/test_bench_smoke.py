"""The benchmark harness runs (at its smallest sizes), so it cannot rot between uses."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
        assert figures["file_create_us"] > 0  # the file system's state, beside the figures
    assert data["workloads"]["server"]["figures"]["download_mb_s"] > 0


def test_a_server_repetition_frees_its_large_files_and_keeps_its_small_ones(
    tmp_path: Path,
) -> None:
    from bench.workloads.server import LARGE_FILE, _drop_large_files

    (tmp_path / "pulled").mkdir()
    large = [tmp_path / "large.bin", tmp_path / "pulled" / "large.bin"]
    for path in large:
        with open(path, "wb") as fh:
            fh.truncate(LARGE_FILE)  # sparse: the size without the disk
    small = tmp_path / "files" / "m0.bin"
    small.parent.mkdir()
    small.write_bytes(b"x" * 65536)
    _drop_large_files(tmp_path)
    assert not any(p.exists() for p in large)
    assert small.read_bytes() == b"x" * 65536


def test_the_server_benchmark_starts_servers_with_their_bytecode_written() -> None:
    import importlib.util

    import modelvault.server.routes_events as module
    from bench.workloads.server import compile_bytecode

    cached = Path(importlib.util.cache_from_source(module.__file__))
    cached.unlink(missing_ok=True)  # as after a checkout run with PYTHONDONTWRITEBYTECODE=1
    compile_bytecode()
    assert cached.is_file() and cached.stat().st_mtime >= Path(module.__file__).stat().st_mtime


def test_a_failing_workload_leaves_the_caller_where_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the harness works in a temporary directory it removes: a workload that fails must not
    # leave the caller's process in it (every later test of a pytest worker would fail)
    from bench import run as harness

    def broken(work: Path, quick: bool) -> dict[str, float]:
        raise RuntimeError("the workload broke")

    monkeypatch.setitem(harness.WORKLOADS, "registry", (broken, {}))
    cwd = os.getcwd()
    with pytest.raises(RuntimeError, match="the workload broke"):
        main(["--quick", "registry"])
    assert os.getcwd() == cwd
