"""`registry`: registrations, filtered searches, alias moves, production lookups."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import Figures
from modelvault import Registry, Settings

FIGURES = {
    "register_per_s": ("/s", "high"),
    "search_tag_ms": ("ms", "low"),
    "search_metric_ms": ("ms", "low"),
    "alias_move_lookup_ms": ("ms", "low"),
    "production_lookup_ms": ("ms", "low"),
    "production_at_time_ms": ("ms", "low"),
}


def _open(home: Path, actor: str) -> Registry:
    return Registry(settings=Settings.from_env(env={}, home=home, actor=actor))


def _median_ms(fn: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def run(work: Path, quick: bool) -> Figures:
    count = 100 if quick else 1000
    home = work / f"registry-{time.monotonic_ns()}"
    reg, bob = _open(home, "bench"), _open(home, "bob")
    files = home.parent / f"{home.name}-files"
    files.mkdir(parents=True)
    paths = []
    for i in range(count):
        p = files / f"m{i}.bin"
        p.write_bytes(os.urandom(64 * 1024))
        paths.append(p)
    params = {f"p{i}": i * 0.5 for i in range(10)}
    teams = ["risk", "growth", "ops", "search"]
    reg.register("warmup", paths[0], capture_code=False)  # environment capture is per process
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        tags = {"team": teams[i % 4], **{f"t{j}": f"v{j}" for j in range(4)}}
        metrics = {f"m{j}": ((i * 31 + j * 7) % 1000) / 1000 for j in range(20)}
        reg.register("bench", p, params=params, metrics=metrics, tags=tags, capture_code=False)
    register_s = time.perf_counter() - t0
    searches = 20 if quick else 200
    search_tag = _median_ms(lambda: reg.search('model = "bench" and tags.team = "ops"'), searches)
    search_metric = _median_ms(lambda: reg.search("model = 'bench' and metrics.m0 > 0.5"), searches)
    reg.promote("bench:1", "staging")
    bob.approve("bench:1")
    reg.promote("bench:1", "production", reason="bench")
    moves = 50 if quick else 500
    state = {"n": 0}

    def move() -> None:
        state["n"] += 1
        reg.set_alias("bench", "champion", str(state["n"] % count + 1))
        reg.get("bench@champion")

    alias_ms = _median_ms(move, moves)
    lookups = 100 if quick else 1000
    prod_ms = _median_ms(lambda: reg.get("bench@production"), lookups)
    now = datetime.now(UTC)

    def at_time() -> None:
        version = reg.get("bench@production", at=now)
        reg.approvals(version.ref)

    at_ms = _median_ms(at_time, lookups // 10)
    reg.close()
    bob.close()
    return {
        "register_per_s": count / register_s,
        "search_tag_ms": search_tag,
        "search_metric_ms": search_metric,
        "alias_move_lookup_ms": alias_ms,
        "production_lookup_ms": prod_ms,
        "production_at_time_ms": at_ms,
    }
