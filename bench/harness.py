"""What every workload shares: repetition with medians, machine facts, tables, JSON files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

Figures = dict[str, float | None]


@dataclass
class Outcome:
    """One tool's figures for one workload: medians over the repetitions."""

    tool: str
    workload: str
    figures: Figures
    runs: list[Figures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def median_figures(runs: list[Figures]) -> Figures:
    keys = {k for run in runs for k in run}
    out: Figures = {}
    for key in sorted(keys):
        values = [run[key] for run in runs if run.get(key) is not None]
        out[key] = statistics.median(v for v in values if v is not None) if values else None
    return out


def repeat(tool: str, workload: str, run: Callable[[], Figures], times: int) -> Outcome:
    runs = [run() for _ in range(times)]
    return Outcome(tool, workload, median_figures(runs), runs)


def machine() -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    from modelvault import __version__

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "modelvault": __version__,
        "commit": commit or None,
    }


def write_json(name: str, payload: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("/s", "MB/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:g}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
