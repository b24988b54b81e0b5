"""The remote registry's deployments: environments, deploys, status (now or at a time), history,
rollouts and rollbacks through the server. A gateway reads the store directly, so it runs
where the store is."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..deploy.records import Deployment, Environment, RolloutStatus
from ..domain import (
    as_json,
)
from ..errors import InvalidInput
from ..timeutil import to_text
from ..wire import from_json
from .base import RemoteBase, seg


class RemoteDeployments(RemoteBase):
    """Deployment methods of :class:`~modelvault.remote.RemoteRegistry`."""

    # -- deployments ------------------------------------------------------------------------
    def _dep(self, model: str, environment: str) -> str:
        project, name = self._model(model)
        return f"/projects/{seg(project)}/deployments/{seg(environment)}/{seg(name)}"

    def add_environment(self, name: str, *, project: str | None = None) -> Environment:
        data = self._http.call(
            "POST", f"/projects/{self._p(project)}/environments", json={"name": name}
        )
        return from_json(Environment, data)

    def environments(self, *, project: str | None = None) -> list[Environment]:
        data = self._http.call("GET", f"/projects/{self._p(project)}/environments")
        return [from_json(Environment, e) for e in data]

    def deploy(
        self,
        model: str,
        environment: str,
        spec: Mapping[str, Any],
        *,
        reason: str | None = None,
        expect_revision: int | None = None,
    ) -> Deployment:
        data = self._http.call(
            "PUT",
            self._dep(model, environment),
            json={"spec": as_json(spec), "reason": reason, "expect_revision": expect_revision},
        )
        return from_json(Deployment, data)

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
        project, rest = self._split(release)
        data = self._http.call(
            "POST",
            f"/projects/{seg(project)}/deployments/{seg(environment)}",
            json={
                "release": rest,
                "config": config,
                "canary": canary,
                "bake": bake,
                "shadow": shadow,
                "sample": sample,
                "sticky": sticky,
                "guardrails": list(guardrails),
                "preview": preview,
                "reason": reason,
            },
        )
        return from_json(Deployment, data)

    def deploy_file(
        self, path: str | Path, *, model: str | None = None, environment: str | None = None
    ) -> Deployment:
        """The YAML file is read here and its document sent to the server."""
        from ..deploy.spec import read_spec_file

        doc = read_spec_file(Path(path))
        model = model or doc.get("model")
        environment = environment or doc.get("environment")
        if not isinstance(model, str) or not isinstance(environment, str):
            raise InvalidInput(
                "the spec needs model and environment keys (or --model and --env)",
                field="spec",
            )
        return self.deploy(model, environment, doc, reason=doc.get("reason"))

    def deployment(self, model: str, environment: str) -> Deployment:
        return from_json(Deployment, self._http.call("GET", self._dep(model, environment)))

    def deployment_history(self, model: str, environment: str) -> list[Deployment]:
        data = self._http.call("GET", self._dep(model, environment) + "/history")
        return [from_json(Deployment, d) for d in data]

    def status(
        self,
        *,
        environment: str | None = None,
        at: datetime | str | None = None,
        all_projects: bool = False,
    ) -> list[Deployment]:
        when = self._time(at)
        params = {"environment": environment, "at": to_text(when) if when else None}
        where = "/deployments" if all_projects else f"/projects/{self._p(None)}/deployments"
        data = self._http.call("GET", where, params=params)
        return [from_json(Deployment, d) for d in data]

    def rollout_status(self, model: str, environment: str) -> RolloutStatus:
        data = self._http.call("GET", self._dep(model, environment) + "/rollout")
        return from_json(RolloutStatus, data)

    def rollout(
        self, verb: str, model: str, environment: str, *, reason: str | None = None
    ) -> Deployment:
        if verb not in ("pause", "resume", "promote", "abort", "advance"):
            raise InvalidInput(f"unknown rollout verb {verb!r}", field="verb")
        data = self._http.call(
            "POST",
            self._dep(model, environment) + "/rollout",
            json={"verb": verb, "reason": reason},
        )
        return from_json(Deployment, data)

    def rollback_deployment(
        self, model: str, environment: str, *, reason: str, feature: str | None = None
    ) -> Deployment:
        data = self._http.call(
            "POST",
            self._dep(model, environment) + "/rollback",
            json={"reason": reason, "feature": feature},
        )
        return from_json(Deployment, data)

    def judge_rollouts(self, environment: str, failures: dict[str, int] | None = None) -> list[Any]:
        from ..service.rollouts import TickResult

        data = self._http.call(
            "POST",
            f"/projects/{self._p(None)}/environments/{seg(environment)}/judge",
            json={"failures": dict(failures or {})},
        )
        if failures is not None:  # the counts carry over to the next call, as locally
            failures.clear()
            failures.update(data["failures"])
        return [from_json(TickResult, r) for r in data["results"]]

    def deployment_roots(self) -> set[str]:
        self._unsupported("listing the blobs deployments need (run gc where the store is)")

    def gateway_app(self, environment: str, **options: Any) -> Any:
        self._unsupported(
            "serving a gateway (it reads the store directly: run `modelvault gateway` where "
            "the registry's store is)"
        )
