"""The rollout controller's judgment, step by step with a hand-moved clock: it holds while
baking, advances when healthy, holds on too few samples (or aborts when told to), needs
``failure_limit`` consecutive breaches, and never re-rolls an aborted candidate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modelvault import Registry
from modelvault.service.deployments import CONTROLLER
from modelvault.service.rollouts import WindowRow, record_windows, tick

from .conftest import FakeClock
from .deploy_helpers import register_model, to_production

Opener = Callable[[str], Registry]


@pytest.fixture
def bot(reg: Registry, as_user: Opener, tmp_path: Path) -> Registry:
    bob = as_user("bob")
    for c in (1.0, 0.5):
        register_model(reg, tmp_path, "fraud", c)
    to_production(reg, bob, "fraud:1")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:1", "production", reason="launch")
    return as_user(CONTROLLER)


def _deploy(reg: Registry, **guardrail: Any) -> None:
    reg.deploy(
        "fraud",
        "production",
        {
            "rollout": {"release": "fraud:2", "steps": [10, 50, 100], "bake": "10m"},
            "guardrails": [{"rule": "error_rate > 2x baseline", "min_samples": 50, **guardrail}],
        },
    )


def _measure(reg: Registry, clock: FakeClock, release: str, requests: int, errors: int) -> None:
    dep_id = _dep_id(reg)
    now = clock.advance(seconds=1)  # measured after the step began
    record_windows(
        reg._ctx,
        [
            WindowRow(
                dep_id, release, "arm", "r1", now - timedelta(seconds=1), now, requests, errors
            )
        ],
    )


def _dep_id(reg: Registry) -> int:
    from modelvault.service.deployments import _current

    with reg._ctx.store.read() as conn:
        return int(_current(conn, "default", "production", "fraud").deployment_id)


def _tick(reg: Registry, bot: Registry, failures: dict[str, int]) -> str:
    dep = reg.deployment("fraud", "production")
    return tick(bot._ctx, dep, _dep_id(reg), failures).action


def test_bakes_then_advances_when_healthy_then_completes(
    reg: Registry, bot: Registry, clock: FakeClock
) -> None:
    _deploy(reg)
    failures: dict[str, int] = {}
    _measure(reg, clock, "fraud:2", 100, 0)
    _measure(reg, clock, "fraud:1", 900, 1)
    assert _tick(reg, bot, failures) == "hold"  # still baking
    clock.advance(minutes=11)
    _measure(reg, clock, "fraud:2", 100, 0)
    _measure(reg, clock, "fraud:1", 900, 1)
    assert _tick(reg, bot, failures) == "advance"
    assert reg.deployment("fraud", "production").spec.arms[0].weight == 50
    event = reg.audit(action="rollout.advance")[-1]
    assert event.actor == CONTROLLER and event.after is not None
    assert event.after["guardrails"][0]["verdict"] == "pass"
    clock.advance(minutes=11)
    _measure(reg, clock, "fraud:2", 500, 1)
    _measure(reg, clock, "fraud:1", 500, 1)
    assert _tick(reg, bot, failures) == "complete"
    assert reg.get("fraud@production").number == 2


def test_too_few_samples_hold_or_abort_as_told(
    reg: Registry, bot: Registry, clock: FakeClock
) -> None:
    _deploy(reg)
    clock.advance(minutes=11)
    _measure(reg, clock, "fraud:2", 10, 5)  # half failing, but only 10 requests
    assert _tick(reg, bot, {}) == "hold"
    assert reg.deployment("fraud", "production").spec.arms[0].weight == 10
    reg.rollout("abort", "fraud", "production", reason="retry with a stall policy")
    reg.deploy_release("fraud:1", "production")  # no-op state to start again
    _deploy(reg, on_inconclusive="rollback")
    clock.advance(minutes=11)
    assert _tick(reg, bot, {}) == "abort"
    assert "stalled" in (reg.audit(action="rollout.abort")[-1].reason or "")


def test_failure_limit_needs_consecutive_breaches_and_aborted_stays_aborted(
    reg: Registry, bot: Registry, clock: FakeClock
) -> None:
    _deploy(reg, failure_limit=2)
    failures: dict[str, int] = {}
    _measure(reg, clock, "fraud:2", 100, 30)
    _measure(reg, clock, "fraud:1", 900, 0)
    assert _tick(reg, bot, failures) == "hold"  # first breach
    assert _tick(reg, bot, failures) == "abort"  # second in a row
    dep = reg.deployment("fraud", "production")
    assert dep.spec.rollout is not None and dep.spec.rollout.status == "aborted"
    assert [(a.release.key, a.weight) for a in dep.spec.arms] == [("fraud:1", 100.0)]
    clock.advance(hours=1)
    assert _tick(reg, bot, failures) == "none"  # never re-rolled automatically


def test_old_measurement_windows_are_pruned(reg: Registry, bot: Registry, clock: FakeClock) -> None:
    from modelvault.service.rollouts import measured, prune_windows

    _deploy(reg)
    _measure(reg, clock, "fraud:2", 10, 0)
    start = clock.now - timedelta(seconds=5)
    clock.advance(days=8)
    _measure(reg, clock, "fraud:2", 20, 0)
    assert prune_windows(reg._ctx, clock.now - timedelta(days=7)) == 1
    found = measured(reg._ctx, _dep_id(reg), start, clock.now)
    assert found[("arm", "fraud:2")].requests == 20


def test_a_quality_drop_seen_in_feedback_aborts(
    reg: Registry, bot: Registry, clock: FakeClock
) -> None:
    reg.deploy(
        "fraud",
        "production",
        {
            "rollout": {"release": "fraud:2", "steps": [10, 100], "bake": "10m"},
            "guardrails": [{"rule": "accuracy < baseline - 0.05", "min_samples": 50}],
        },
    )
    now = clock.advance(seconds=1)
    dep_id = _dep_id(reg)
    since = now - timedelta(seconds=1)
    record_windows(
        reg._ctx,
        [
            WindowRow(dep_id, "fraud:2", "arm", "r1", since, now, 100, feedback_rows=100,
                      feedback_correct=80),
            WindowRow(dep_id, "fraud:1", "arm", "r1", since, now, 900, feedback_rows=900,
                      feedback_correct=855),
        ],
    )  # fmt: skip
    assert _tick(reg, bot, {}) == "abort"
    rule = reg.audit(action="rollout.abort")[-1].after["guardrails"][0]  # type: ignore[index]
    assert rule["measured"] == pytest.approx(0.8) and rule["limit"] == pytest.approx(0.9)


def test_judging_a_whole_environment_acts_as_the_controller(
    reg: Registry, bot: Registry, clock: FakeClock
) -> None:
    _deploy(reg)
    _measure(reg, clock, "fraud:2", 100, 40)
    _measure(reg, clock, "fraud:1", 900, 0)
    results = reg.judge_rollouts("production")
    assert [(r.model, r.action) for r in results] == [("fraud", "abort")]
    assert reg.audit(action="rollout.abort")[-1].actor == CONTROLLER
    assert reg.judge_rollouts("production") == []  # nothing running any more
