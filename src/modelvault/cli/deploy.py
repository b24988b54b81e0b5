"""Deployment commands: `deploy`, `status`, `rollout …`, `env …` (and `rollback --env`,
which lives with `rollback` in app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..deploy.records import Deployment, RolloutStatus
from ..errors import InvalidInput
from . import output
from .app import Json, app, registry

rollout_app = typer.Typer(
    help="Staged rollouts: status, pause, resume, promote, abort.", no_args_is_help=True
)
env_app = typer.Typer(help="Environments (development, staging, production, and more).")
app.add_typer(rollout_app, name="rollout")
app.add_typer(env_app, name="env")

Env = Annotated[str, typer.Option("--env", "-e", help="Environment, e.g. production")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (written to the audit)")]


@app.command()
def deploy(
    ref: Annotated[
        str | None, typer.Argument(help="Release to deploy: MODEL:N (or -f SPEC)")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Environment")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="YAML deployment spec (docs/rollout.md)")
    ] = None,
    canary: Annotated[
        str | None, typer.Option("--canary", help="Traffic steps in %, e.g. 1,5,25,50,100")
    ] = None,
    bake: Annotated[
        str | None, typer.Option("--bake", help="Time each step must stay healthy, e.g. 10m")
    ] = None,
    shadow: Annotated[
        str | None, typer.Option("--shadow", help="Release to mirror requests to (MODEL:N)")
    ] = None,
    sample: Annotated[
        float | None, typer.Option("--sample", help="Share of requests mirrored (0-1]")
    ] = None,
    sticky: Annotated[
        str | None, typer.Option("--sticky", help="Sticky key: header:NAME or json:FIELD")
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Inference config version (MODEL:N)")
    ] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option("--guardrail", help="e.g. 'error_rate > 2x baseline' (repeat)"),
    ] = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="Blue-green: 0% traffic, served to X-Model-Preview: 1"),
    ] = False,
    reason: Reason = None,
    json_: Json = False,
) -> None:
    """Deploy a release to an environment: all at once, as a canary rollout, as a shadow or
    preview; or apply a YAML spec with -f."""
    reg = registry()
    if file is not None:
        if ref is not None or canary or shadow or config or preview:
            raise InvalidInput("-f SPEC replaces the other deploy options", field="file")
        done = reg.deploy_file(file, environment=env)
    else:
        if env is None:
            raise InvalidInput("give --env (e.g. --env production)", field="env")
        if ref is None:
            raise InvalidInput("give a release (MODEL:N) or -f SPEC", field="release")
        done = reg.deploy_release(
            ref,
            env,
            config=config,
            canary=canary,
            bake=bake,
            shadow=shadow,
            sample=sample,
            sticky=sticky,
            guardrails=tuple(guardrail or ()),
            preview=preview,
            reason=reason,
        )
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done.name} revision {done.revision}: {arms_text(done)}")


def arms_text(dep: Deployment) -> str:
    return ", ".join(f"{a.release} {a.weight:g}%" for a in dep.spec.arms)


def rollout_text(dep: Deployment) -> str:
    plan = dep.spec.rollout
    if plan is None:
        return ""
    return (
        f"{plan.candidate} step {plan.step + 1}/{len(plan.steps)} ({plan.weight:g}%) {plan.status}"
    )


@app.command()
def status(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment")] = None,
    at: Annotated[str | None, typer.Option("--at", help="As of this time (ISO 8601 or 2d)")] = None,
    all_projects: Annotated[bool, typer.Option("--all-projects")] = False,
    json_: Json = False,
) -> None:
    """What runs where, with weights: now, or at a past time (--at)."""
    found = registry().status(environment=env, at=at, all_projects=all_projects)
    if json_:
        output.emit_json(found)
        return
    if not found:
        output.message("nothing deployed" + (f" in {env}" if env else ""))
        return
    output.table(
        None,
        ["environment", "model", "rev", "arms", "rollout", "shadows", "standby", "since", "by"],
        [
            (
                d.environment,
                d.model if d.project == "default" else f"{d.project}/{d.model}",
                d.revision,
                arms_text(d),
                rollout_text(d),
                ", ".join(f"{s.release} {s.sample:g}" for s in d.spec.shadows),
                str(d.spec.standby.release) if d.spec.standby else "",
                d.valid_from.strftime("%Y-%m-%d %H:%M:%S"),
                d.set_by,
            )
            for d in found
        ],
    )


def _render_rollout(found: RolloutStatus) -> None:
    dep = found.deployment
    output.fields(
        [
            ("deployment", f"{dep.name} revision {dep.revision}"),
            ("arms", arms_text(dep)),
            ("rollout", rollout_text(dep) or "none"),
            (
                "bake left",
                f"{found.bake_remaining_s:.0f}s" if found.bake_remaining_s is not None else None,
            ),
        ]
    )
    rows = [
        (
            s.release,
            "arm",
            s.requests,
            s.errors,
            f"{s.error_rate:.4f}" if s.error_rate is not None else "",
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            f"{s.accuracy:.4f} ({s.feedback_rows})" if s.accuracy is not None else "",
        )
        for s in found.arms
    ] + [
        (
            s.release,
            "shadow",
            s.shadow_compared,
            s.shadow_errors,
            "",
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            f"{s.shadow_agreement:.4f}" if s.shadow_agreement is not None else "",
        )
        for s in found.shadows
    ]
    if rows:
        output.table(
            "measured",
            [
                "release",
                "role",
                "requests",
                "errors",
                "error rate",
                "p50",
                "p95",
                "p99",
                "agree / accuracy",
            ],
            rows,
        )
    if found.guardrails:
        output.table(
            "guardrails",
            ["rule", "verdict", "measured", "limit", "samples", "window"],
            [
                (g.rule, g.verdict, g.measured, g.limit, g.samples, f"{g.window_s:g}s")
                for g in found.guardrails
            ],
        )


@rollout_app.command("status")
def rollout_status(model: str, env: Env, json_: Json = False) -> None:
    """The rollout of MODEL: step, bake time left, per-arm measurements, guardrail verdicts."""
    found = registry().rollout_status(model, env)
    if json_:
        output.emit_json(found)
    else:
        _render_rollout(found)


def _verb(verb: str, model: str, env: str, reason: str | None, json_: bool) -> None:
    done = registry().rollout(verb, model, env, reason=reason)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done.name}: {rollout_text(done)}; arms {arms_text(done)}")


@rollout_app.command("pause")
def rollout_pause(model: str, env: Env, reason: Reason = None, json_: Json = False) -> None:
    """Hold the rollout at its current step (the controller stops advancing)."""
    _verb("pause", model, env, reason, json_)


@rollout_app.command("resume")
def rollout_resume(model: str, env: Env, reason: Reason = None, json_: Json = False) -> None:
    """Continue a paused rollout; the current step's bake starts again."""
    _verb("resume", model, env, reason, json_)


@rollout_app.command("promote")
def rollout_promote(model: str, env: Env, reason: Reason = None, json_: Json = False) -> None:
    """Skip the remaining steps: the candidate takes all traffic (in production, through the
    registry's gate)."""
    _verb("promote", model, env, reason, json_)


@rollout_app.command("abort")
def rollout_abort(
    model: str,
    env: Env,
    reason: Annotated[str, typer.Option("--reason", help="Why (required)")],
    json_: Json = False,
) -> None:
    """Send all traffic back to the stable release."""
    _verb("abort", model, env, reason, json_)


@env_app.callback(invoke_without_command=True)
def env_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        env_list(json_=False)


@env_app.command("list")
def env_list(json_: Json = False) -> None:
    """List the environments of the project."""
    found = registry().environments()
    if json_:
        output.emit_json(found)
    else:
        output.table(
            None,
            ["environment", "kind", "created by"],
            [(e.name, "built in" if e.builtin else "added", e.created_by) for e in found],
        )


@env_app.command("add")
def env_add(name: str, json_: Json = False) -> None:
    """Add an environment to the project."""
    done = registry().add_environment(name)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"added environment {done.name} to project {done.project}")


@app.command()
def gateway(
    env: Env,
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8080,
    poll: Annotated[
        float, typer.Option("--poll", help="Seconds between routing-table checks (fallback)")
    ] = 0.5,
    no_controller: Annotated[
        bool, typer.Option("--no-controller", help="Do not judge or advance rollouts here")
    ] = False,
) -> None:
    """Serve the releases deployed to an environment: POST /v1/models/MODEL/predict."""
    import uvicorn

    app_ = registry().gateway_app(env, poll_s=poll, controller=not no_controller)
    output.message(f"gateway for {env} on http://{host}:{port}")
    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)


@app.command()
def controller(
    env: Env,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between judgments")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Judge once and exit")] = False,
    json_: Json = False,
) -> None:
    """Judge running rollouts from measurements the gateways stored: advance after a healthy
    bake, abort on a guardrail breach (for gateways run with --no-controller)."""
    import time

    reg = registry()
    failures: dict[str, int] = {}
    while True:
        results = reg.judge_rollouts(env, failures)
        if json_:
            for result in results:
                output.emit_json_line(result)
        else:
            for result in results:
                output.message(f"{result.model}: {result.action} {result.detail}".rstrip())
        if once:
            return
        time.sleep(max(0.05, interval))
