"""Rollout use-cases: status with measurements, the human verbs (pause, resume, promote,
abort), the controller's tick (advance after bake when healthy, abort on a guardrail
breach), and gateways' measurement windows.

The automatic actor (``modelvault-controller``) may advance and abort; completing a rollout
in production promotes the candidate through the registry's gate, which it cannot override.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select

from ..deploy import spec as specs
from ..deploy.guardrails import judge
from ..deploy.records import (
    ArmStats,
    Deployment,
    DeploymentSpec,
    GuardrailResult,
    RolloutPlan,
    RolloutStatus,
)
from ..deploy.stats import HIST_SIZE, add, percentile
from ..errors import Conflict, GateFailed, InvalidInput
from ..limits import check_text
from ..store import schema
from ..timeutil import from_text, to_text
from .context import Context, resolve_model
from .deploy_rollback import abort_spec
from .deployments import _current, deployment_of, sync_registry_stage, write_state

W = schema.deployment_windows


@dataclass(frozen=True, slots=True)
class WindowRow:
    """What one gateway replica measured for one release over one flush period."""

    deployment_id: int
    release: str
    role: str  # arm or shadow
    replica: str
    window_from: datetime
    window_to: datetime
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latency: tuple[int, ...] = ()
    shadow_compared: int = 0
    shadow_agreed: int = 0
    shadow_abs_diff_sum: float = 0.0
    shadow_abs_diff_max: float = 0.0
    shadow_errors: int = 0
    feedback_rows: int = 0
    feedback_correct: int = 0
    feedback_scored: int = 0
    feedback_abs_err_sum: float = 0.0


def record_windows(ctx: Context, rows: Sequence[WindowRow]) -> None:
    """Store measurements (observations, not state: no audit event)."""
    if not rows:
        return
    values = []
    for r in rows:
        d = asdict(r)
        d["window_from"], d["window_to"] = to_text(r.window_from), to_text(r.window_to)
        d["latency"] = json.dumps(list(r.latency))
        values.append(d)
    with ctx.store.write() as conn:
        conn.execute(insert(W), values)


def prune_windows(ctx: Context, older_than: datetime) -> int:
    """Delete measurement windows that ended before *older_than* (decisions keep their
    evidence in the audit log)."""
    with ctx.store.write() as conn:
        done = conn.execute(delete(W).where(W.c.window_to < to_text(older_than)))
    return int(done.rowcount or 0)


def measured(
    ctx: Context, deployment_id: int, since: datetime, until: datetime
) -> dict[tuple[str, str], ArmStats]:
    """Per (role, release): the sums of every replica's windows ending in (since, until]."""
    with ctx.store.read(snapshot=False) as conn:
        rows = conn.execute(
            select(
                W.c.release,
                W.c.role,
                func.sum(W.c.requests),
                func.sum(W.c.errors),
                func.sum(W.c.client_errors),
                func.sum(W.c.shadow_compared),
                func.sum(W.c.shadow_agreed),
                func.sum(W.c.shadow_abs_diff_sum),
                func.max(W.c.shadow_abs_diff_max),
                func.sum(W.c.shadow_errors),
                func.sum(W.c.feedback_rows),
                func.sum(W.c.feedback_correct),
                func.sum(W.c.feedback_scored),
                func.sum(W.c.feedback_abs_err_sum),
            )
            .where(
                W.c.deployment_id == deployment_id,
                W.c.window_to > to_text(since),
                W.c.window_to <= to_text(until),
            )
            .group_by(W.c.release, W.c.role)
        ).all()
        hists: dict[tuple[str, str], list[int]] = {}
        for release, role, latency in conn.execute(
            select(W.c.release, W.c.role, W.c.latency).where(
                W.c.deployment_id == deployment_id,
                W.c.window_to > to_text(since),
                W.c.window_to <= to_text(until),
            )
        ):
            key = (role, release)
            hists[key] = add(hists.get(key, [0] * HIST_SIZE), json.loads(latency))
    out: dict[tuple[str, str], ArmStats] = {}
    for row in rows:
        release, role, req, err, cerr, cmp_, agr, diff_sum, diff_max, serr = row[:10]
        f_rows, f_ok, f_scored = (int(v or 0) for v in row[10:13])
        f_err = float(row[13] or 0)
        hist = hists.get((role, release), [])
        compared = int(cmp_ or 0)
        out[(role, release)] = ArmStats(
            release=release,
            requests=int(req or 0),
            errors=int(err or 0),
            client_errors=int(cerr or 0),
            p50_ms=percentile(hist, 0.50),
            p95_ms=percentile(hist, 0.95),
            p99_ms=percentile(hist, 0.99),
            shadow_compared=compared,
            shadow_agreement=(int(agr or 0) / compared) if compared else None,
            shadow_mean_abs_diff=(float(diff_sum or 0) / compared) if compared else None,
            shadow_max_abs_diff=float(diff_max) if compared and diff_max is not None else None,
            shadow_errors=int(serr or 0),
            feedback_rows=f_rows,
            accuracy=(f_ok / f_rows) if f_rows else None,
            feedback_scored=f_scored,
            mean_abs_error=(f_err / f_scored) if f_scored else None,
        )
    return out


def judge_guardrails(ctx: Context, dep_id: int, spec: DeploymentSpec) -> list[GuardrailResult]:
    plan = spec.rollout
    if plan is None:
        return []
    results = []
    now = ctx.now()
    step_started = from_text(plan.step_started)
    for rule in spec.guardrails:
        # only what was measured at the current step counts
        since = max(now - timedelta(seconds=rule.window_s), step_started)
        stats = measured(ctx, dep_id, since, now)
        if rule.metric.startswith("shadow_"):
            cand = stats.get(("shadow", plan.candidate.key)) or ArmStats(plan.candidate.key)
        else:
            cand = stats.get(("arm", plan.candidate.key)) or ArmStats(plan.candidate.key)
        base = stats.get(("arm", plan.stable.key))
        results.append(judge(rule, cand, base, since, now))
    return results


def rollout_status(ctx: Context, model: str, environment: str) -> RolloutStatus:
    project, name = resolve_model(ctx, model)
    with ctx.store.read() as conn:
        row = _current(conn, project, environment, name)
    dep = deployment_of(row)
    plan = dep.spec.rollout
    now = ctx.now()
    window = max((g.window_s for g in dep.spec.guardrails), default=300.0)
    since = now - timedelta(seconds=window)
    if plan is not None and plan.step_started:
        since = max(since, from_text(plan.step_started))
    stats = measured(ctx, row.deployment_id, since, now)
    arms = tuple(v for (role, _), v in sorted(stats.items()) if role == "arm")
    shadows = tuple(v for (role, _), v in sorted(stats.items()) if role == "shadow")
    remaining = None
    if plan is not None and plan.status == "running":
        elapsed = (now - from_text(plan.step_started)).total_seconds()
        remaining = max(0.0, plan.bake_s - elapsed)
    return RolloutStatus(
        deployment=dep,
        arms=arms,
        shadows=shadows,
        guardrails=tuple(judge_guardrails(ctx, row.deployment_id, dep.spec)),
        bake_remaining_s=remaining,
    )


Change = Callable[[RolloutPlan, DeploymentSpec, str], DeploymentSpec]


def _change(
    ctx: Context,
    model: str,
    environment: str,
    verb: str,
    allowed: tuple[str, ...],
    change: Change,
    reason: str | None,
    *,
    expect_revision: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Deployment:
    reason = check_text(reason.strip() if reason else None, limit="reason_chars", what="reason")
    project, name = resolve_model(ctx, model)
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _current(conn, project, environment, name)
        if expect_revision is not None and row.revision != expect_revision:
            raise Conflict(
                f"the deployment of {name} in {environment} moved to revision {row.revision}",
                model=name,
            )
        spec = specs.from_json(json.loads(row.spec))
        plan = spec.rollout
        if plan is None or plan.status not in allowed:
            now_status = "no rollout" if plan is None else f"the rollout is {plan.status}"
            raise Conflict(
                f"cannot {verb} {name} in {environment}: {now_status}",
                model=name,
                environment=environment,
            )
        new_spec = change(plan, spec, to_text(at))
        write_state(
            conn,
            ctx,
            project=project,
            environment=environment,
            model=name,
            dep_id=row.deployment_id,
            current=row,
            spec=new_spec,
            at=at,
            action=f"rollout.{verb}",
            reason=reason,
            extra=extra,
        )
        if new_spec.rollout is not None and new_spec.rollout.status == "complete":
            sync_registry_stage(
                conn,
                ctx,
                project,
                environment,
                new_spec,
                reason or f"rollout of {plan.candidate} completed in {environment}",
            )
        done = _current(conn, project, environment, name)
    return deployment_of(done)


def _at_step(plan: RolloutPlan, spec: DeploymentSpec, step: int, now: str) -> DeploymentSpec:
    last = step >= len(plan.steps) - 1
    moved = replace(
        plan, step=min(step, len(plan.steps) - 1), status="complete" if last else "running"
    )
    moved = replace(moved, step_started=now)
    new = replace(spec, rollout=moved, arms=specs.rollout_arms(moved))
    if last:
        # the old stable release stays loaded as the hot standby
        new = specs.with_standby(new, replace(spec, rollout=None), specs.DEFAULT_STANDBY_S, now)
    return new


def pause(ctx: Context, model: str, environment: str, reason: str | None = None) -> Deployment:
    return _change(
        ctx,
        model,
        environment,
        "pause",
        ("running",),
        lambda plan, spec, now: replace(spec, rollout=replace(plan, status="paused")),
        reason,
    )


def resume(ctx: Context, model: str, environment: str, reason: str | None = None) -> Deployment:
    return _change(
        ctx,
        model,
        environment,
        "resume",
        ("paused",),
        lambda plan, spec, now: replace(
            spec, rollout=replace(plan, status="running", step_started=now)
        ),
        reason,
    )


def promote(ctx: Context, model: str, environment: str, reason: str | None = None) -> Deployment:
    """Skip the remaining steps: the candidate takes all traffic (through its gate)."""
    return _change(
        ctx,
        model,
        environment,
        "promote",
        ("running", "paused"),
        lambda plan, spec, now: _at_step(plan, spec, len(plan.steps) - 1, now),
        reason,
    )


def advance(
    ctx: Context,
    model: str,
    environment: str,
    reason: str | None = None,
    *,
    expect_revision: int | None = None,
    evidence: Sequence[GuardrailResult] = (),
) -> Deployment:
    return _change(
        ctx,
        model,
        environment,
        "advance",
        ("running",),
        lambda plan, spec, now: _at_step(plan, spec, plan.step + 1, now),
        reason,
        expect_revision=expect_revision,
        extra={"guardrails": [_evidence(r) for r in evidence]} if evidence else None,
    )


def abort(
    ctx: Context,
    model: str,
    environment: str,
    reason: str | None,
    *,
    expect_revision: int | None = None,
    evidence: Sequence[GuardrailResult] = (),
) -> Deployment:
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("a reason is required to abort a rollout (--reason)", field="reason")
    return _change(
        ctx,
        model,
        environment,
        "abort",
        ("running", "paused"),
        lambda plan, spec, now: abort_spec(spec, text, now),
        text,
        expect_revision=expect_revision,
        extra={"guardrails": [_evidence(r) for r in evidence]} if evidence else None,
    )


def _evidence(r: GuardrailResult) -> dict[str, Any]:
    return {
        "rule": r.rule,
        "verdict": r.verdict,
        "measured": r.measured,
        "limit": r.limit,
        "samples": r.samples,
        "window_s": r.window_s,
        "window_from": to_text(r.window_from),
        "window_to": to_text(r.window_to),
        **dict(r.detail),
    }


@dataclass(frozen=True, slots=True)
class TickResult:
    model: str
    environment: str
    action: str  # none, hold, advance, complete, abort, blocked
    results: tuple[GuardrailResult, ...] = ()
    detail: str = ""


def tick(
    ctx: Context,
    deployment: Deployment,
    deployment_id: int,
    failures: MutableMapping[str, int],
) -> TickResult:
    """One judgment of a running rollout; *failures* counts consecutive breaches per rule
    (kept by the caller between ticks). Acts through advance/abort with the deployment's
    revision, so of several replicas judging at once only one change lands."""
    spec, model, env = deployment.spec, deployment.model, deployment.environment
    plan = spec.rollout
    if plan is None or plan.status != "running":
        return TickResult(model, env, "none")
    results = tuple(judge_guardrails(ctx, deployment_id, spec))
    breached = []
    for r in results:
        key = f"{deployment.revision}:{r.rule}"
        if r.verdict == "breach":
            failures[key] = failures.get(key, 0) + 1
            rule = next(g for g in spec.guardrails if g.rule == r.rule)
            if failures[key] >= rule.failure_limit:
                breached.append(r)
        else:
            failures.pop(key, None)
    ref = f"{deployment.project}/{model}"
    try:
        if breached:
            names = "; ".join(
                f"{r.rule}: measured {r.measured:.4g} vs limit {r.limit:.4g} over "
                f"{r.samples} requests"
                for r in breached
                if r.measured is not None and r.limit is not None
            )
            abort(
                ctx,
                ref,
                env,
                f"guardrail breached: {names}",
                expect_revision=deployment.revision,
                evidence=results,
            )
            return TickResult(model, env, "abort", results, names)
        elapsed = (ctx.now() - from_text(plan.step_started)).total_seconds()
        if elapsed < plan.bake_s:
            return TickResult(model, env, "hold", results, "baking")
        unsure = [r for r in results if r.verdict == "inconclusive"]
        if unsure:
            stalled = [
                r
                for r in unsure
                if next(g for g in spec.guardrails if g.rule == r.rule).on_inconclusive
                == "rollback"
            ]
            if stalled:
                abort(
                    ctx,
                    ref,
                    env,
                    "rollout stalled: too few samples to judge "
                    + ", ".join(r.rule for r in stalled),
                    expect_revision=deployment.revision,
                    evidence=results,
                )
                return TickResult(model, env, "abort", results, "stalled")
            return TickResult(model, env, "hold", results, "inconclusive")
        done = advance(
            ctx,
            ref,
            env,
            f"step {plan.step + 1} of {len(plan.steps)} healthy after {plan.bake_s:g}s bake",
            expect_revision=deployment.revision,
            evidence=results,
        )
        after = done.spec.rollout
        action = "complete" if after is not None and after.status == "complete" else "advance"
        return TickResult(model, env, action, results)
    except GateFailed as exc:
        return TickResult(model, env, "blocked", results, exc.message)
    except Conflict as exc:
        return TickResult(model, env, "none", results, exc.message)


def judge_environment(
    ctx: Context, environment: str, failures: MutableMapping[str, int]
) -> list[TickResult]:
    """One judgment of every running rollout in *environment* (the project's), acting as
    the automatic actor: what ``modelvault controller`` and each gateway do every second."""
    from dataclasses import replace as _replace

    from .deployments import CONTROLLER, current_rows
    from .environments import check_environment

    bot = _replace(ctx, actor=CONTROLLER)
    with ctx.store.read() as conn:
        check_environment(conn, ctx.settings.project, environment)
        rows = current_rows(conn, ctx.settings.project, environment)
    results = []
    for row in rows:
        dep = deployment_of(row)
        if dep.spec.rollout is not None and dep.spec.rollout.status == "running":
            results.append(tick(bot, dep, row.deployment_id, failures))
    return results
