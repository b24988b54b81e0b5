"""`audit-queries`: the audit log's questions at 10,000,000 events.

The log is filled with `audit.append_batch` (1,000 events per transaction) from 20 actors,
8 actions and 100 models in 10 projects, one batch every two simulated hours (10,000,000
events over 2.3 years), so every question below has many answers spread over the log.
Then each question is asked through `Registry.audit` (first page of 100, newest first
unless said), median of 50:

- `by_actor_ms`: what did one person do (1 in 20 events);
- `actor_action_quarter_ms`: what did alice deploy last quarter (actor, action, time range);
- `by_model_ms`: the history of one model (1 in 100 events);
- `by_action_ms`: one kind of event (1 in 8);
- `time_range_ms`: one day, oldest first;
- `page_50_ms`: the 50th page of one actor's events, paged by sequence number.

`MODELVAULT_BENCH_AUDIT_EVENTS` sets the size (default 10,000,000; `--quick`: 50,000).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import Figures
from modelvault import Registry, Settings
from modelvault.audit import EventDraft, append_batch

FIGURES = {
    "events": ("", "high"),
    "fill_per_s": ("/s", "high"),
    "by_actor_ms": ("ms", "low"),
    "actor_action_quarter_ms": ("ms", "low"),
    "by_model_ms": ("ms", "low"),
    "by_action_ms": ("ms", "low"),
    "time_range_ms": ("ms", "low"),
    "page_50_ms": ("ms", "low"),
}
ACTORS = [f"user{i:02d}" for i in range(20)]
ACTIONS = [
    "version.register",
    "version.promote",
    "deployment.deploy",
    "version.approve",
    "alias.set",
    "deployment.rollback",
    "run.start",
    "hold.add",
]
START = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 1_000


def _fill(reg: Registry, total: int) -> float:
    ctx = reg._ctx  # the benchmark drives the service layer directly
    t0 = time.perf_counter()
    for k in range(total // BATCH):
        drafts = []
        for i in range(BATCH):
            n = k * BATCH + i
            model = f"m{n % 100:02d}"
            drafts.append(
                EventDraft(
                    ACTIONS[(n // 7) % len(ACTIONS)],
                    f"p{n % 10}/{model}:{n % 50 + 1}",
                    project=f"p{n % 10}",
                    model=model,
                    after={"number": n % 50 + 1},
                )
            )
        with ctx.store.write() as conn:
            append_batch(
                conn, drafts, actor=ACTORS[k % len(ACTORS)], at=START + timedelta(hours=2 * k)
            )
    return total / (time.perf_counter() - t0)


def _median_ms(ask: Callable[[], Any], times: int) -> float:
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        ask()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def run(work: Path, quick: bool) -> Figures:
    total = 50_000 if quick else int(os.environ.get("MODELVAULT_BENCH_AUDIT_EVENTS", "10000000"))
    home = work / f"auditq-{time.monotonic_ns()}"
    settings = Settings.from_env(env={"MODELVAULT_CHECKPOINT_EVERY": "0"}, home=home, actor="b")
    reg = Registry(settings=settings)
    try:
        reg.init()
        figures: Figures = {"events": total, "fill_per_s": _fill(reg, total)}
        end = START + timedelta(hours=2 * (total // BATCH))
        quarter = (end - timedelta(days=91), end)
        day = START + (end - START) / 2
        asks: dict[str, Callable[[], Any]] = {
            "by_actor_ms": lambda: reg.audit(actor="user07", limit=100, newest_first=True),
            "actor_action_quarter_ms": lambda: reg.audit(
                actor="user03",
                action="deployment.deploy",
                since=quarter[0],
                until=quarter[1],
                limit=100,
                newest_first=True,
            ),
            "by_model_ms": lambda: reg.audit(model="p3/m33", limit=100, newest_first=True),
            "by_action_ms": lambda: reg.audit(
                action="version.approve", limit=100, newest_first=True
            ),
            "time_range_ms": lambda: reg.audit(since=day, until=day + timedelta(days=1), limit=100),
        }
        for name, ask in asks.items():
            assert ask(), f"{name} found nothing"
            figures[name] = _median_ms(ask, 50)
        page, after = 0, 0
        while page < 49:  # the 50th page is asked for below, from where the 49th ended
            events = reg.audit(actor="user11", after_seq=after, limit=100)
            if not events:
                break
            after, page = events[-1].seq, page + 1
        figures["page_50_ms"] = _median_ms(
            lambda: reg.audit(actor="user11", after_seq=after, limit=100), 50
        )
        return figures
    finally:
        reg.close()
