"""Optional sampling of system metrics into a run: CPU, memory, this process's RSS, and GPU
utilisation and memory when ``nvidia-smi`` is present, every N seconds."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping


def _gpu_sample() -> dict[str, float]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run(
            [
                exe,
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values: dict[str, float] = {}
    for i, line in enumerate(out.strip().splitlines()):
        parts = [p.strip() for p in line.split(",")]
        try:
            values[f"system/gpu{i}_utilization_percent"] = float(parts[0])
            values[f"system/gpu{i}_memory_used_mb"] = float(parts[1])
        except (IndexError, ValueError):
            continue
    return values


def sample() -> dict[str, float]:
    import psutil

    memory = psutil.virtual_memory()
    values = {
        "system/cpu_percent": float(psutil.cpu_percent(interval=None)),
        "system/memory_used_mb": memory.used / 2**20,
        "system/memory_percent": float(memory.percent),
        "system/process_rss_mb": psutil.Process().memory_info().rss / 2**20,
    }
    values.update(_gpu_sample())
    return values


class SystemSampler:
    """Calls *log(values, step)* every *interval* seconds until stopped."""

    def __init__(self, log: Callable[[Mapping[str, float], int], None], interval: float) -> None:
        self._log = log
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mv-system-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        step = 0
        sample()  # the first cpu_percent reading is meaningless; it starts the interval
        while not self._stop.wait(self._interval):
            try:
                self._log(sample(), step)
            except Exception:  # sampling must never break the run it observes
                return
            step += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)
