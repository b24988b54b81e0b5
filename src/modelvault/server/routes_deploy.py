"""Deployments over the wire: environments, deploy (a spec document or the ``deploy`` command's
options), what runs where, rollouts, rollback and one judgment of running rollouts.

Reading needs ``read``; deploying and steering rollouts ``deploy``; rolling back ``rollback``;
adding an environment (project configuration) ``admin``. A release reference naming another
project is looked up only once the caller may read that project, so a spec cannot be used to
probe a tenant the token may not see.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends
from fastapi.responses import Response
from pydantic import Field

from ..deploy.records import Deployment, Environment, RolloutStatus
from ..errors import InvalidInput
from ..refs import parse_ref
from .auth import Caller, caller
from .bodies import INT_MAX, Body, ok
from .routing import documented_router

router = documented_router("/api/v1")
Who = Annotated[Caller, Depends(caller)]
P = "/projects/{project}"
D = P + "/deployments/{environment}/{model}"


class EnvironmentBody(Body):
    name: str


class SpecBody(Body):
    spec: dict[str, Any] = Field(description="the spec document (docs/rollout.md)")
    reason: str | None = None
    expect_revision: int | None = Field(None, ge=0, le=INT_MAX)


class ReleaseBody(Body):
    """What the ``deploy`` command's options say (``Registry.deploy_release``)."""

    release: str
    config: str | None = None
    canary: str | None = None
    bake: str | None = None
    shadow: str | None = None
    sample: float | None = None
    sticky: str | None = None
    guardrails: list[str] = Field(default_factory=list, max_length=100)
    preview: bool = False
    reason: str | None = None


class RolloutBody(Body):
    verb: Literal["pause", "resume", "promote", "abort", "advance"]
    reason: str | None = None


class RollbackBody(Body):
    reason: str
    feature: str | None = None


class JudgeBody(Body):
    failures: dict[str, Annotated[int, Field(ge=0, le=INT_MAX)]] = Field(
        default_factory=dict, description="consecutive breach counts from the previous answer"
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _guard_refs(who: Caller, project: str, *values: Any) -> None:
    """Every release reference naming another project must be one the caller may read."""
    for text in _strings(list(values)):
        if "/" not in text:
            continue
        try:
            other = parse_ref(text).project
        except InvalidInput:
            continue
        if other is not None and other != project:
            who.read(other)


@router.get(P + "/environments", responses={200: {"model": list[Environment]}})
def environments(project: str, who: Who) -> Response:
    return ok(who.read(project).environments(project=project))


@router.post(P + "/environments", status_code=201, responses={201: {"model": Environment}})
def add_environment(project: str, body: EnvironmentBody, who: Who) -> Response:
    reg = who.need(project, "admin")
    return ok(reg.add_environment(body.name, project=project), status=201)


@router.get(P + "/deployments", responses={200: {"model": list[Deployment]}})
def status(
    project: str, who: Who, environment: str | None = None, at: str | None = None
) -> Response:
    """What runs where in the project, with weights: now, or as of time *at*."""
    return ok(who.read(project).status(environment=environment, at=at))


@router.get("/deployments", responses={200: {"model": list[Deployment]}})
def status_everywhere(who: Who, environment: str | None = None, at: str | None = None) -> Response:
    """What runs where in every project the token may read."""
    readable = who.readable()
    reg = who.base._acting_as(who.user)
    found = reg.status(environment=environment, at=at, all_projects=True)
    return ok([d for d in found if readable is None or d.project in readable])


@router.post(P + "/deployments/{environment}", responses={200: {"model": Deployment}})
def deploy_release(project: str, environment: str, body: ReleaseBody, who: Who) -> Response:
    """Deploy a release (``MODEL:N``) the way the ``deploy`` command's options say."""
    reg = who.need(project, "deploy")
    _guard_refs(who, project, body.release, body.config, body.shadow)
    ref = parse_ref(body.release)
    if ref.project is not None and ref.project != project:
        raise InvalidInput(
            f"release {body.release} names another project than {project}", field="release"
        )
    done = reg.deploy_release(
        f"{project}/{body.release}" if ref.project is None else body.release,
        environment,
        config=body.config,
        canary=body.canary,
        bake=body.bake,
        shadow=body.shadow,
        sample=body.sample,
        sticky=body.sticky,
        guardrails=tuple(body.guardrails),
        preview=body.preview,
        reason=body.reason,
    )
    return ok(done)


@router.get(D, responses={200: {"model": Deployment}})
def deployment(project: str, environment: str, model: str, who: Who) -> Response:
    return ok(who.read(project).deployment(f"{project}/{model}", environment))


@router.put(D, responses={200: {"model": Deployment}})
def deploy(project: str, environment: str, model: str, body: SpecBody, who: Who) -> Response:
    """Make a spec document the desired state of the model in the environment."""
    reg = who.need(project, "deploy")
    _guard_refs(who, project, body.spec)
    done = reg.deploy(
        f"{project}/{model}",
        environment,
        body.spec,
        reason=body.reason,
        expect_revision=body.expect_revision,
    )
    return ok(done)


@router.get(D + "/history", responses={200: {"model": list[Deployment]}})
def history(project: str, environment: str, model: str, who: Who) -> Response:
    return ok(who.read(project).deployment_history(f"{project}/{model}", environment))


@router.get(D + "/rollout", responses={200: {"model": RolloutStatus}})
def rollout_status(project: str, environment: str, model: str, who: Who) -> Response:
    """The rollout's step, bake time left, per-arm measurements and guardrail verdicts."""
    return ok(who.read(project).rollout_status(f"{project}/{model}", environment))


@router.post(D + "/rollout", responses={200: {"model": Deployment}})
def rollout(project: str, environment: str, model: str, body: RolloutBody, who: Who) -> Response:
    """Pause, resume, promote, abort or advance the rollout."""
    reg = who.need(project, "deploy")
    return ok(reg.rollout(body.verb, f"{project}/{model}", environment, reason=body.reason))


@router.post(D + "/rollback", responses={200: {"model": Deployment}})
def rollback(project: str, environment: str, model: str, body: RollbackBody, who: Who) -> Response:
    """All traffic back to the previous release, or one feature's route."""
    reg = who.need(project, "rollback")
    done = reg.rollback_deployment(
        f"{project}/{model}", environment, reason=body.reason, feature=body.feature
    )
    return ok(done)


@router.post(P + "/environments/{environment}/judge")
def judge(project: str, environment: str, body: JudgeBody, who: Who) -> Response:
    """Judge every running rollout in the environment once, as the controller does; send the
    answer's ``failures`` back with the next call."""
    reg = who.need(project, "deploy")
    failures = dict(body.failures)
    results = reg.judge_rollouts(environment, failures)
    return ok({"results": results, "failures": failures})
