"""Deployment rollback: all traffic back to the hot standby (or the previous release), one
feature's route back to what it was, or an unfinished rollout aborted; in production the
registry's production stage follows in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from ..deploy import spec as specs
from ..deploy.records import Arm, Deployment, DeploymentSpec, FeatureRoute, Release, RolloutPlan
from ..errors import Conflict, InvalidInput, NotFound
from ..lifecycle import Stage
from ..limits import check_text
from ..store import schema
from ..timeutil import to_text
from .context import Context, resolve_model
from .deployments import DS, D, M, P, V, _current, _state_select, deployment_of, write_state


def _previous_release(rows: Sequence[Any], current: DeploymentSpec) -> Release | None:
    """The stable release of the newest earlier state that differs from the current one."""
    for row in reversed(rows):
        spec = specs.from_json(json.loads(row.spec))
        if spec.stable != current.stable:
            return spec.stable
    return None


def rollback_deployment(
    ctx: Context, model: str, environment: str, reason: str, feature: str | None = None
) -> Deployment:
    """All traffic back to the previous release (the hot standby), or, with *feature*, only
    that feature's route back to what it was. An unfinished rollout is aborted instead."""
    reason_text = (reason or "").strip()
    if not reason_text:
        raise InvalidInput("a reason is required for a rollback (--reason)", field="reason")
    check_text(reason_text, limit="reason_chars", what="reason")
    project, name = resolve_model(ctx, model)
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _current(conn, project, environment, name)
        spec = specs.from_json(json.loads(row.spec))
        earlier = conn.execute(
            _state_select()
            .where(D.c.id == row.deployment_id, DS.c.revision < row.revision)
            .order_by(DS.c.revision)
        ).all()
        extra: dict[str, Any] = {}
        if feature is not None:
            new_spec = _rollback_feature(spec, earlier, feature)
            extra["feature"] = feature
        elif spec.rollout is not None and spec.rollout.status in ("running", "paused"):
            new_spec = abort_spec(spec, reason_text, to_text(at))
        else:
            target = spec.standby.release if spec.standby is not None else None
            target = target or _previous_release(earlier, spec)
            if target is None:
                raise Conflict(
                    f"{name} in {environment} has no previous release to roll back to",
                    model=name,
                    environment=environment,
                )
            new_spec = replace(
                spec,
                arms=(Arm(target, 100.0),),
                rollout=None,
                segments=(),
                features=(),
                preview=None,
            )
            new_spec = specs.with_standby(new_spec, spec, specs.DEFAULT_STANDBY_S, to_text(at))
            extra["restored"] = target.key
            if environment == "production":
                _rollback_registry(conn, ctx, project, name, spec.stable, target, reason_text)
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
            action="deployment.rollback",
            reason=reason_text,
            extra=extra,
        )
        done = _current(conn, project, environment, name)
    return deployment_of(done)


def _rollback_registry(
    conn: Connection,
    ctx: Context,
    project: str,
    model: str,
    current: Release,
    target: Release,
    reason: str,
) -> None:
    """Keep the registry's production stage in step with production traffic."""
    from .stages import rollback_in

    if current.version == target.version:
        return  # a config-only rollback: the model version stays
    prod = conn.execute(
        select(V.c.number)
        .select_from(schema.stage_intervals.join(V, schema.stage_intervals.c.version_id == V.c.id))
        .join(M, V.c.model_id == M.c.id)
        .join(P, M.c.project_id == P.c.id)
        .where(
            P.c.name == project,
            M.c.name == model,
            schema.stage_intervals.c.stage == Stage.PRODUCTION.value,
            schema.stage_intervals.c.valid_to.is_(None),
        )
    ).scalar()
    if prod == current.version:
        rollback_in(conn, ctx, project, model, reason, target.version)


def _rollback_feature(spec: DeploymentSpec, earlier: Sequence[Any], feature: str) -> DeploymentSpec:
    now = {f.feature: f.release for f in spec.features}
    if feature not in now:
        raise NotFound(f"feature {feature!r} has no route in this deployment", feature=feature)
    previous: Release | None = None
    for row in reversed(earlier):
        old = {f.feature: f.release for f in specs.from_json(json.loads(row.spec)).features}
        if old.get(feature) != now[feature]:
            previous = old.get(feature)
            break
    routes = [f for f in spec.features if f.feature != feature]
    if previous is not None:
        routes.append(FeatureRoute(feature, previous))
    return replace(spec, features=tuple(sorted(routes, key=lambda f: f.feature)))


def abort_spec(spec: DeploymentSpec, reason: str, now_text: str) -> DeploymentSpec:
    """Every request back on the stable release; the candidate stays loaded as standby."""
    plan = spec.rollout
    if plan is None:
        raise Conflict("no rollout is in progress")
    aborted = RolloutPlan(
        plan.candidate,
        plan.stable,
        plan.steps,
        plan.bake_s,
        plan.step,
        "aborted",
        now_text,
        reason,
    )
    return replace(spec, arms=(Arm(plan.stable, 100.0),), rollout=aborted)
