"""The deployment half of ``Registry``: environments, deploy, status, rollouts, rollback."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import Deployment, Environment, RolloutStatus

if TYPE_CHECKING:
    from ..service.context import Context


class DeploymentMethods:
    _ctx: Context

    def _time(self, value: datetime | str | None) -> datetime | None:  # pragma: no cover
        raise NotImplementedError

    def add_environment(self, name: str, *, project: str | None = None) -> Environment:
        from ..service.environments import add_environment

        return add_environment(self._ctx, name, project)

    def environments(self, *, project: str | None = None) -> list[Environment]:
        from ..service.environments import list_environments

        return list_environments(self._ctx, project)

    def deploy(
        self,
        model: str,
        environment: str,
        spec: Mapping[str, Any],
        *,
        reason: str | None = None,
        expect_revision: int | None = None,
    ) -> Deployment:
        """Make *spec* (a spec document, docs/rollout.md) the desired state of *model* in
        *environment*. Releases new to it must load first; in production they must pass the
        production gate."""
        from ..service.deployments import deploy

        return deploy(self._ctx, model, environment, spec, reason, expect_revision=expect_revision)

    def deploy_release(
        self,
        release: str,
        environment: str,
        *,
        config: str | None = None,
        canary: str | None = None,
        bake: str | None = None,
        shadow: str | None = None,
        sample: float | None = None,
        sticky: str | None = None,
        guardrails: tuple[str, ...] = (),
        preview: bool = False,
        reason: str | None = None,
    ) -> Deployment:
        """Deploy *release* (``MODEL:N``) the way the ``deploy`` command's options say."""
        from ..errors import NotFound
        from ..refs import parse_ref
        from ..service.deployments import build_document, deploy, get_deployment

        ref = parse_ref(release)
        model = f"{ref.project}/{ref.model}" if ref.project else ref.model
        try:
            current = get_deployment(self._ctx, model, environment)
        except NotFound:
            current = None
        doc = build_document(
            release,
            config=config,
            canary=canary,
            bake=bake,
            shadow=shadow,
            sample=sample,
            sticky=sticky,
            guardrails=guardrails,
            preview=preview,
            current=current,
        )
        return deploy(self._ctx, model, environment, doc, reason)

    def deploy_file(
        self, path: str | Path, *, model: str | None = None, environment: str | None = None
    ) -> Deployment:
        """Deploy the spec in a YAML file (its ``model`` and ``environment`` keys, or these)."""
        from ..errors import InvalidInput
        from ..service.deployments import deploy
        from .spec import read_spec_file

        doc = read_spec_file(Path(path))
        model = model or doc.get("model")
        environment = environment or doc.get("environment")
        if not isinstance(model, str) or not isinstance(environment, str):
            raise InvalidInput(
                "the spec needs model and environment keys (or --model and --env)",
                field="spec",
            )
        return deploy(self._ctx, model, environment, doc, doc.get("reason"))

    def deployment(self, model: str, environment: str) -> Deployment:
        from ..service.deployments import get_deployment

        return get_deployment(self._ctx, model, environment)

    def deployment_history(self, model: str, environment: str) -> list[Deployment]:
        from ..service.deployments import history

        return history(self._ctx, model, environment)

    def status(
        self,
        *,
        environment: str | None = None,
        at: datetime | str | None = None,
        all_projects: bool = False,
    ) -> list[Deployment]:
        """What runs where, with weights: now, or at time *at*."""
        from ..service.deployments import status

        return status(
            self._ctx, environment=environment, at=self._time(at), all_projects=all_projects
        )

    def rollout_status(self, model: str, environment: str) -> RolloutStatus:
        from ..service.rollouts import rollout_status

        return rollout_status(self._ctx, model, environment)

    def rollout(
        self, verb: str, model: str, environment: str, *, reason: str | None = None
    ) -> Deployment:
        """``pause``, ``resume``, ``promote`` or ``abort`` the rollout of *model*."""
        from ..errors import InvalidInput
        from ..service import rollouts

        if verb == "pause":
            return rollouts.pause(self._ctx, model, environment, reason)
        if verb == "resume":
            return rollouts.resume(self._ctx, model, environment, reason)
        if verb == "promote":
            return rollouts.promote(self._ctx, model, environment, reason)
        if verb == "abort":
            return rollouts.abort(self._ctx, model, environment, reason)
        if verb == "advance":
            return rollouts.advance(self._ctx, model, environment, reason)
        raise InvalidInput(f"unknown rollout verb {verb!r}", field="verb")

    def rollback_deployment(
        self, model: str, environment: str, *, reason: str, feature: str | None = None
    ) -> Deployment:
        """All traffic of *model* in *environment* back to the previous release (in
        production the registry's production stage follows), or one feature's route."""
        from ..service.deploy_rollback import rollback_deployment

        return rollback_deployment(self._ctx, model, environment, reason, feature)

    def judge_rollouts(self, environment: str, failures: dict[str, int] | None = None) -> list[Any]:
        """Judge every running rollout in *environment* once, as ``modelvault-controller``
        (advance after a healthy bake, abort on a breach). *failures* carries consecutive
        breach counts between calls."""
        from ..service.rollouts import judge_environment

        return judge_environment(self._ctx, environment, {} if failures is None else failures)

    def deployment_roots(self) -> set[str]:
        """Digests of every blob current deployments need (never to be garbage-collected)."""
        from ..service.deployments import deployment_roots

        return deployment_roots(self._ctx)

    def gateway_app(self, environment: str, **options: Any) -> Any:
        """The gateway's ASGI application serving *environment* (``modelvault gateway``);
        *options* are ``modelvault.gateway.core.Gateway``'s (poll_s, flush_s, ...)."""
        from ..gateway.app import create_app
        from ..service.environments import check_environment

        with self._ctx.store.read() as conn:
            check_environment(conn, self._ctx.settings.project, environment)
        return create_app(self._ctx, environment, **options)
