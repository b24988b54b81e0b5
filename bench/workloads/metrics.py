"""`metrics`: 100,000 metric points in batches of 1,000 and 2,000 single-point logs through
a run, as MLflow's side does; plus a simulated training loop to measure how long logging
blocks the loop (the tracking issue's target: < 5 % of loop time)."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

from bench.harness import Figures
from modelvault import Registry, Settings

FIGURES = {
    "batch_points_per_s": ("/s", "high"),
    "batch_accepted_per_s": ("/s", "high"),
    "single_points_per_s": ("/s", "high"),
    "loop_blocked_percent": ("%", "low"),
    "loop_points_per_s": ("/s", "high"),
}


def _work(seconds: float) -> None:
    """Stand-in for a training step: CPU work that holds the GIL, as Python code does."""
    end = time.perf_counter() + seconds
    data = b"x" * 4096
    while time.perf_counter() < end:
        hashlib.sha1(data).digest()


def run(work: Path, quick: bool) -> Figures:
    home = work / f"metrics-{time.monotonic_ns()}"
    reg = Registry(settings=Settings.from_env(env={}, home=home, actor="bench"))
    n_batch = 10_000 if quick else 100_000
    n_single = 200 if quick else 2000
    rng = random.Random(7)
    batches = [
        [(f"m{i % 10}", rng.random(), b * 1000 + i) for i in range(1000)]
        for b in range(n_batch // 1000)
    ]
    with reg.start_run(experiment="bench", capture_code=False) as r:
        t0 = time.perf_counter()
        for batch in batches:
            r.log_batch(batch)
        accepted_s = time.perf_counter() - t0
        r.flush()  # durable: every point committed
        batch_s = time.perf_counter() - t0
        values = [rng.random() for _ in range(n_single)]
        t0 = time.perf_counter()
        for step, value in enumerate(values):
            r.log_metric("single", value, step=step)
        r.flush()
        single_s = time.perf_counter() - t0
    if len(reg.metric_history(r.id, "m0")) != n_batch // 10:
        raise RuntimeError("metric history is incomplete")

    # A training loop: 1,000 steps of ~1 ms work, logging 10 metrics per step. Blocked time
    # is the loop's wall time with logging minus without, over the time without.
    steps, per_step = (200 if quick else 1000), 0.001
    t0 = time.perf_counter()
    for _ in range(steps):
        _work(per_step)
    bare_s = time.perf_counter() - t0
    with reg.start_run(experiment="bench", capture_code=False) as r:
        t0 = time.perf_counter()
        for step in range(steps):
            _work(per_step)
            r.log_metrics({f"k{j}": step * 0.1 + j for j in range(10)}, step=step)
        loop_s = time.perf_counter() - t0
    reg.close()
    return {
        "batch_points_per_s": n_batch / batch_s,
        "batch_accepted_per_s": n_batch / accepted_s,
        "single_points_per_s": n_single / single_s,
        "loop_blocked_percent": max(0.0, (loop_s - bare_s) / bare_s * 100),
        "loop_points_per_s": steps * 10 / loop_s,
    }
