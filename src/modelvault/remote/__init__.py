"""The remote registry: ``Registry("http://host:7310", token=...)`` speaks to a modelvault
server with the same methods, return types and exceptions as a local registry.

Registration hashes the files here. Small files (up to ``INLINE_FILE`` bytes each,
``INLINE_TOTAL`` in all) travel inside the registration request, so a typical version is one
request; for larger ones it asks the server which blobs it lacks and uploads only those (large
files in resumable chunks), then registers the version from its manifest; code and
environment are captured on this machine, where the model was made. Pulls verify every file's
digest as it is written. Deployment specs read from a file are sent as their document; a
gateway reads the store directly, so it runs where the store is; the server runs no models,
so ``evaluate`` stays where the model runs. Snapshots are hashed here and their files
and run artifacts are hashed here and their files uploaded like a version's. Registering
from a run takes the run's record on the server (and, without a PATH, the model the run
logged under ``model/``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from ..canonical import sha256_digest
from ..deploy.records import Deployment, Environment, RolloutStatus
from ..domain import (
    AliasInterval,
    Approval,
    AuditEvent,
    AuditVerification,
    DatasetRef,
    FileEntry,
    Manifest,
    Model,
    PullResult,
    StageInterval,
    Transition,
    Version,
    VersionDiff,
    as_json,
)
from ..errors import InvalidInput, NotFound
from ..events.records import CreatedWebhook, DeadLetter, Webhook
from ..refs import parse_ref
from ..registry import ProgressFactory, Registry
from ..settings import Settings
from ..timeutil import Clock, to_text
from ..tracking.records import (
    BehaviourComparison,
    EvaluationReport,
    GateReport,
    Lineage,
    MetricPoint,
    Run,
    RunArtifact,
    RunComparison,
    Snapshot,
    SnapshotDiff,
)
from ..wire import from_json
from .blobs import RemoteBlobStore, file_digest
from .http import Transport

__all__ = ["INLINE_FILE", "INLINE_TOTAL", "RemoteRegistry"]

INLINE_FILE = 256 << 10  # a file this small is sent with the version, not uploaded apart
INLINE_TOTAL = 4 << 20  # and no more than this much inline per registration


def _seg(text: str) -> str:
    return quote(text, safe=":@")


class RemoteRegistry(Registry):
    """A registry served by ``modelvault server`` at *url*."""

    def __init__(
        self,
        url: str | Path | None = None,
        *,
        token: str | None = None,
        settings: Settings | None = None,
        actor: str | None = None,
        project: str | None = None,
        clock: Clock | None = None,
        timeout: float = 60.0,
        transport: Transport | None = None,
    ) -> None:
        base = settings or Settings.from_env()
        if project is not None:
            from ..limits import check_name

            base = replace(base, project=check_name(project, what="project name"))
        given = str(url) if isinstance(url, str) and "://" in url else ""
        target = given or base.url
        if not target.startswith(("http://", "https://")):
            raise InvalidInput(f"server URL must start with http:// or https://: {target!r}")
        self.settings = base
        self.url = target.rstrip("/")
        self._http = transport or Transport(self.url, token or base.token or None, timeout=timeout)
        self._blobs = RemoteBlobStore(self._http)
        self._user: str | None = None
        self._auto_checkpoint = None

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.url!r})"

    @property
    def _ctx(self) -> Any:  # type: ignore[override]
        raise InvalidInput(
            "this operation is not available through a server yet: run it where the "
            "registry's store is (unset MODELVAULT_URL)"
        )

    def _unsupported(self, what: str) -> NoReturn:
        raise InvalidInput(f"{what} is not available through a server yet (unset MODELVAULT_URL)")

    # -- plumbing ---------------------------------------------------------------------------
    def _split(self, ref: str) -> tuple[str, str]:
        parsed = parse_ref(ref)
        project = parsed.project or self.settings.project
        return project, str(replace(parsed, project=None))

    def _model(self, model: str) -> tuple[str, str]:
        project, rest = self._split(model)
        name = parse_ref(rest).model
        return project, name

    def _p(self, project: str | None) -> str:
        return _seg(project or self.settings.project)

    def close(self) -> None:
        self._http.close()

    def init(self) -> dict[str, str]:
        ready = self._http.client.get("/readyz").json()
        return {"server": self.url, "schema": str(ready.get("schema", ready.get("status")))}

    def upgrade_schema(self) -> Any:
        self._unsupported("upgrading the schema (the server migrates itself at start)")

    def schema_status(self) -> Any:
        self._unsupported("schema status")

    @property
    def actor(self) -> str:
        if self._user is None:
            self._user = str(self._http.call("GET", "/whoami")["user"])
        return self._user

    def _time(self, value: datetime | str | None) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        from ..timeutil import parse_time, utc_now

        return parse_time(value, now=utc_now())

    # -- versions ---------------------------------------------------------------------------
    def register(
        self,
        model: str,
        path: str | Path | None = None,
        *,
        kind: str = "model",
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        datasets: Sequence[str | DatasetRef] = (),
        parents: Sequence[str] = (),
        components: Sequence[str] = (),
        label: str | None = None,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        feature_pipeline: str | None = None,
        inference_config: str | None = None,
        flavor: str | None = None,
        seed: int | None = None,
        capture_code: bool = True,
        capture_environment: bool = True,
        code_dir: str | Path | None = None,
        project: str | None = None,
        progress: ProgressFactory | None = None,
        run: str | None = None,
    ) -> Version:
        from ..capture import capture
        from ..configs import read_config
        from ..datasets import parse_dataset
        from ..limits import check_metrics, check_name, check_params, check_tags
        from ..manifest import manifest_bytes, scan
        from ..service.versions import RegisterRequest, _validate

        if isinstance(path, str) and not path.strip():  # Path("") would mean the cwd
            raise InvalidInput("path is empty", path="")
        if run is not None:  # the version describes how the run made it, not this process
            capture_code = capture_environment = False
        project = check_name(project or self.settings.project, what="project name")
        req = RegisterRequest(
            model=model,
            path=Path(path) if path is not None else None,
            kind=kind,
            datasets=datasets,
            parents=parents,
            components=components,
            label=label,
            description=description,
            flavor=flavor,
            seed=seed,
            feature_pipeline=feature_pipeline,
            inference_config=inference_config,
            config=config,
        )
        # what can be checked here is checked before a byte is sent; from a run without a
        # PATH, the model's files are those the run logged under model/ (on the server)
        from_run = run is not None and req.path is None and kind == "model"
        _validate(replace(req, path=Path(".")) if from_run else req)
        params, metrics, tags = (
            check_params(params or {}),
            check_metrics(metrics or {}),
            check_tags(tags or {}),
        )
        for d in datasets:  # every reference is checked before any byte is sent
            if not isinstance(d, DatasetRef):
                parse_dataset(d, None)
        if kind == "config" and path is not None and config is None:
            config = read_config(Path(path))
        manifest_text = None
        inline: dict[str, str] = {}  # digest -> base64 of a small file's bytes
        if req.path is not None:
            scanned = scan(req.path)
            tick = progress(2 * sum(f.size for f in scanned)) if progress else None
            entries = []
            room = INLINE_TOTAL
            for item in scanned:
                data = None
                if item.size <= INLINE_FILE and item.size <= room:
                    data = item.source.read_bytes()
                    digest = sha256_digest(data)
                else:
                    digest = file_digest(item.source)
                if tick is not None:
                    tick(item.size)
                entries.append(FileEntry(item.path, item.size, digest, item.mode))
                fresh = digest not in self._blobs.present and digest not in inline
                if data is not None and len(data) == item.size and fresh:
                    inline[digest] = base64.b64encode(data).decode("ascii")
                    room -= item.size
            # small files go inline with the version; the others are uploaded first, unless
            # the server already has them
            wanted = list(dict.fromkeys(e.digest for e in entries if e.digest not in inline))
            lacking = set(self._blobs.missing(wanted)) if wanted else set()
            sizes = {
                e.digest: (item.source, e.size) for e, item in zip(entries, scanned, strict=True)
            }
            for digest in wanted:
                source, size = sizes[digest]
                if digest in lacking:
                    self._blobs.upload(source, digest, size, tick)
                elif tick is not None:
                    tick(size)
            for digest in inline:
                if tick is not None:
                    tick(sizes[digest][1])
            manifest_text = manifest_bytes(entries).decode("utf-8")  # sent with the version
        refs = [d if isinstance(d, DatasetRef) else parse_dataset(d, self._blobs) for d in datasets]
        code, env, extra = capture(
            self._blobs,
            code_dir=Path(code_dir) if code_dir is not None else None,
            seed=seed,
            code=capture_code,
            environment=capture_environment,
        )
        body = {
            "kind": kind,
            "manifest_text": manifest_text,
            "params": params,
            "metrics": metrics,
            "tags": tags,
            "datasets": [as_json(d) for d in refs],
            "parents": list(parents),
            "components": list(components),
            "label": label,
            "description": description,
            "config": dict(config) if config is not None else None,
            "feature_pipeline": feature_pipeline,
            "inference_config": inference_config,
            "flavor": flavor,
            "code": as_json(code),
            "environment": as_json(env),
            "extra_blobs": [list(pair) for pair in extra],
            "blobs": inline,
            "run": run,
        }
        path_ = f"/projects/{_seg(project)}/models/{_seg(model)}/versions"
        try:
            data = self._http.call("POST", path_, json=body)
            self._blobs.present.update(inline)
        except NotFound as exc:  # a blob this client took for stored is gone: send again
            if "digest" not in exc.fields or exc.fields["digest"] not in self._blobs.present:
                raise
            self._blobs.present.clear()
            return self.register(
                model,
                path,
                kind=kind,
                params=params,
                metrics=metrics,
                tags=tags,
                datasets=datasets,
                parents=parents,
                components=components,
                label=label,
                description=description,
                config=config,
                feature_pipeline=feature_pipeline,
                inference_config=inference_config,
                flavor=flavor,
                seed=seed,
                capture_code=capture_code,
                capture_environment=capture_environment,
                code_dir=code_dir,
                project=project,
                progress=progress,
                run=run,
            )
        return from_json(Version, data)

    def get(self, ref: str, *, at: datetime | str | None = None) -> Version:
        project, rest = self._split(ref)
        when = self._time(at)
        params = {"at": to_text(when)} if when is not None else None
        data = self._http.call("GET", f"/projects/{_seg(project)}/refs/{_seg(rest)}", params=params)
        return from_json(Version, data)

    def models(self, *, project: str | None = None) -> list[Model]:
        data = self._http.call("GET", f"/projects/{self._p(project)}/models")
        return [from_json(Model, m) for m in data]

    def versions(self, model: str, *, project: str | None = None) -> list[Version]:
        proj, name = self._model(model) if project is None else (project, model)
        data = self._http.call("GET", f"/projects/{_seg(proj)}/models/{_seg(name)}/versions")
        return [from_json(Version, v) for v in data]

    def search(
        self,
        query: str,
        *,
        project: str | None = None,
        all_projects: bool = False,
        limit: int | None = 1000,
    ) -> list[Version]:
        if all_projects:
            data = self._http.call("GET", "/search", params={"q": query, "limit": limit})
        else:
            data = self._http.call(
                "GET", f"/projects/{self._p(project)}/search", params={"q": query, "limit": limit}
            )
        return [from_json(Version, v) for v in data]

    def manifest(self, ref: str) -> Manifest:
        project, rest = self._split(ref)
        data = self._http.call("GET", f"/projects/{_seg(project)}/refs/{_seg(rest)}/manifest")
        return from_json(Manifest, data)

    def pull(
        self,
        ref: str,
        dest: str | Path,
        *,
        overwrite: bool = False,
        progress: ProgressFactory | None = None,
    ) -> PullResult:
        from ..service.artifacts import pull_from

        version = self.get(ref)
        return pull_from(
            self._blobs,
            version.artifact_digest,
            str(version),
            Path(dest),
            overwrite=overwrite,
            progress=progress,
        )

    def diff(self, a: str, b: str) -> VersionDiff:
        pa, ra = self._split(a)
        pb, rb = self._split(b)
        if pa != pb:
            self._unsupported("diffing versions of two projects")
        data = self._http.call("GET", f"/projects/{_seg(pa)}/diff", params={"a": ra, "b": rb})
        return from_json(VersionDiff, data)

    # -- lifecycle --------------------------------------------------------------------------
    def approve(self, ref: str, *, comment: str | None = None) -> Approval:
        project, rest = self._split(ref)
        data = self._http.call(
            "POST",
            f"/projects/{_seg(project)}/refs/{_seg(rest)}/approvals",
            json={"comment": comment},
        )
        return from_json(Approval, data)

    def approvals(self, ref: str) -> list[Approval]:
        project, rest = self._split(ref)
        data = self._http.call("GET", f"/projects/{_seg(project)}/refs/{_seg(rest)}/approvals")
        return [from_json(Approval, a) for a in data]

    def promote(
        self, ref: str, to: str, *, reason: str | None = None, override: bool = False
    ) -> Transition:
        project, rest = self._split(ref)
        data = self._http.call(
            "POST",
            f"/projects/{_seg(project)}/refs/{_seg(rest)}/promote",
            json={"to": to, "reason": reason, "override": override},
        )
        return from_json(Transition, data)

    def rollback(self, model: str, *, reason: str, to: int | None = None) -> Transition:
        project, name = self._model(model)
        data = self._http.call(
            "POST",
            f"/projects/{_seg(project)}/models/{_seg(name)}/rollback",
            json={"reason": reason, "to": to},
        )
        return from_json(Transition, data)

    def stage_history(self, model: str) -> list[StageInterval]:
        project, name = self._model(model)
        data = self._http.call("GET", f"/projects/{_seg(project)}/models/{_seg(name)}/stages")
        return [from_json(StageInterval, s) for s in data]

    def set_alias(self, model: str, alias: str, ref: str, *, expect: Any = None) -> AliasInterval:
        project, name = self._model(model)
        data = self._http.call(
            "PUT",
            f"/projects/{_seg(project)}/models/{_seg(name)}/aliases/{_seg(alias)}",
            json={"ref": ref, "expect": expect},
        )
        return from_json(AliasInterval, data)

    def remove_alias(self, model: str, alias: str, *, expect: Any = None) -> AliasInterval:
        project, name = self._model(model)
        data = self._http.call(
            "DELETE",
            f"/projects/{_seg(project)}/models/{_seg(name)}/aliases/{_seg(alias)}",
            params={"expect": expect},
        )
        return from_json(AliasInterval, data)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasInterval]:
        project, name = self._model(model)
        data = self._http.call(
            "GET", f"/projects/{_seg(project)}/models/{_seg(name)}/aliases", params={"alias": alias}
        )
        return [from_json(AliasInterval, a) for a in data]

    # -- audit ------------------------------------------------------------------------------
    def audit(
        self,
        *,
        model: str | None = None,
        project: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after_seq: int = 0,
        limit: int | None = 1000,
        newest_first: bool = False,
    ) -> list[AuditEvent]:
        name = None
        if model is not None:
            project, name = self._model(model)
        start, end = self._time(since), self._time(until)
        data = self._http.call(
            "GET",
            f"/projects/{self._p(project)}/audit",
            params={
                "model": name,
                "actor": actor,
                "action": action,
                "since": to_text(start) if start else None,
                "until": to_text(end) if end else None,
                "after": after_seq,
                "limit": limit,
                "newest_first": newest_first,
            },
        )
        return [from_json(AuditEvent, e) for e in data]

    def events(
        self, after: int = 0, *, limit: int = 100, project: str | None = None, wait: float = 0.0
    ) -> list[AuditEvent]:
        data = self._http.call(
            "GET",
            f"/projects/{self._p(project)}/events",
            params={"after": after, "limit": limit, "wait": wait},
        )
        return [from_json(AuditEvent, e) for e in data]

    def verify_audit(self) -> AuditVerification:
        return from_json(AuditVerification, self._http.call("GET", "/audit/verify"))

    def checkpoint(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._http.call("POST", "/audit/checkpoint")
        return result

    def audit_public_key(self) -> bytes:
        return self._http.request("GET", "/audit/public-key").content

    def checkpoints(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._http.call("GET", "/audit/checkpoints")
        return result

    def inclusion_proof(self, seq: int, *, tree_size: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "GET", "/audit/proofs/inclusion", params={"seq": seq, "tree_size": tree_size}
        )
        return result

    def consistency_proof(self, old_size: int, new_size: int) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "GET", "/audit/proofs/consistency", params={"old": old_size, "new": new_size}
        )
        return result

    def explain(
        self, ref: str, *, env: str | None = None, at: datetime | str | None = None
    ) -> dict[str, Any]:
        project, rest = self._split(ref)
        when = self._time(at)
        result: dict[str, Any] = self._http.call(
            "GET",
            f"/projects/{_seg(project)}/refs/{_seg(rest)}/explain",
            params={"env": env, "at": to_text(when) if when else None},
        )
        return result

    # -- webhooks ---------------------------------------------------------------------------
    def add_webhook(
        self,
        name: str,
        url: str,
        *,
        events: Sequence[str] = ("*",),
        secret: str | None = None,
        max_attempts: int = 8,
        timeout_ms: int = 10_000,
        from_seq: int | None = None,
        project: str | None = None,
    ) -> CreatedWebhook:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/webhooks",
            json={
                "name": name,
                "url": url,
                "events": list(events),
                "secret": secret,
                "max_attempts": max_attempts,
                "timeout_ms": timeout_ms,
                "from_seq": from_seq,
            },
        )
        return from_json(CreatedWebhook, data)

    def webhooks(self, *, project: str | None = None) -> list[Webhook]:
        data = self._http.call("GET", f"/projects/{self._p(project)}/webhooks")
        return [from_json(Webhook, w) for w in data]

    def remove_webhook(self, name: str, *, project: str | None = None) -> None:
        self._http.request("DELETE", f"/projects/{self._p(project)}/webhooks/{_seg(name)}")

    def replay_webhook(self, name: str, from_seq: int, *, project: str | None = None) -> Webhook:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/webhooks/{_seg(name)}/replay",
            json={"from_seq": from_seq},
        )
        return from_json(Webhook, data)

    def dead_letters(self, name: str, *, project: str | None = None) -> list[DeadLetter]:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/webhooks/{_seg(name)}/dead-letters"
        )
        return [from_json(DeadLetter, d) for d in data]

    def deliver_webhooks(self) -> int:
        self._unsupported("delivering webhooks by hand (the server delivers them)")

    # -- runs -------------------------------------------------------------------------------
    def _run_blobs(self) -> Any:
        return self._blobs

    def _begin_run(
        self,
        *,
        experiment: str,
        project: str,
        record: Mapping[str, Any],
        name: str | None,
        parent_id: str | None,
        tags: Mapping[str, str],
    ) -> Run:
        data = self._http.call(
            "POST",
            f"/projects/{_seg(project)}/runs",
            json={
                "experiment": experiment,
                "name": name,
                "parent": parent_id,
                "tags": dict(tags),
                "record": as_json(record),
            },
        )
        return from_json(Run, data)

    def get_run(self, run_id: str, *, project: str | None = None) -> Run:
        data = self._http.call("GET", f"/projects/{self._p(project)}/runs/{_seg(run_id)}")
        return from_json(Run, data)

    def runs(
        self,
        *,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 100,
        project: str | None = None,
    ) -> list[Run]:
        data = self._http.call(
            "GET",
            f"/projects/{self._p(project)}/runs",
            params={"experiment": experiment, "status": status, "limit": limit or 10_000},
        )
        return [from_json(Run, r) for r in data]

    def metric_history(
        self, run_id: str, key: str, *, project: str | None = None
    ) -> list[MetricPoint]:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/runs/{_seg(run_id)}/metrics/{_seg(key)}"
        )
        return [from_json(MetricPoint, p) for p in data]

    def log_params(
        self, run_id: str, params: Mapping[str, Any], *, project: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{_seg(run_id)}/params",
            json={"params": dict(params)},
        )
        return result

    def set_run_tags(
        self, run_id: str, tags: Mapping[str, str], *, project: str | None = None
    ) -> None:
        self._http.request(
            "POST",
            f"/projects/{self._p(project)}/runs/{_seg(run_id)}/tags",
            json={"tags": dict(tags)},
        )

    def log_metric_points(
        self,
        run_id: str,
        points: Sequence[tuple[str, float, int, int]],
        *,
        project: str | None = None,
    ) -> int:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{_seg(run_id)}/metrics",
            json={"points": [list(p) for p in points]},
        )
        return int(data["stored"])

    def end_run(
        self,
        run_id: str,
        status: str = "finished",
        *,
        failure: str | None = None,
        project: str | None = None,
    ) -> Run:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{_seg(run_id)}/end",
            json={"status": status, "failure": failure},
        )
        return from_json(Run, data)

    # -- deployments ------------------------------------------------------------------------
    def _dep(self, model: str, environment: str) -> str:
        project, name = self._model(model)
        return f"/projects/{_seg(project)}/deployments/{_seg(environment)}/{_seg(name)}"

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
            f"/projects/{_seg(project)}/deployments/{_seg(environment)}",
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
            f"/projects/{self._p(None)}/environments/{_seg(environment)}/judge",
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

    # -- evaluations, gates, lineage, snapshots ---------------------------------------------
    def _ref_path(self, ref: str, tail: str) -> str:
        project, rest = self._split(ref)
        return f"/projects/{_seg(project)}/refs/{_seg(rest)}/{tail}"

    def _set_ref(self, eval_set: Snapshot | str | Path, ref: str) -> str:
        """The evaluation set as a snapshot reference (a local path is snapshotted, its
        files stored on the server, as locally)."""
        if isinstance(eval_set, str) and not eval_set.strip():
            raise InvalidInput("the evaluation set is empty", field="eval_set")
        project, _ = self._split(ref)
        snap = self._as_snapshot(eval_set, name=None, project=project, store=True)
        return f"{snap.name}@{snap.digest}"

    def record_evaluation(
        self,
        ref: str,
        eval_set: Snapshot | str,
        *,
        metrics: Mapping[str, float],
        latency_ms: Mapping[str, float] | Sequence[float] | None = None,
        cost_per_request: float | None = None,
        outputs: Sequence[Any] | None = None,
        label_column: str = "label",
    ) -> EvaluationReport:
        latency: Any = latency_ms
        if latency_ms is not None:
            latency = dict(latency_ms) if isinstance(latency_ms, Mapping) else list(latency_ms)
        data = self._http.call(
            "POST",
            self._ref_path(ref, "evaluations"),
            json={
                "eval_set": self._set_ref(eval_set, ref),
                "metrics": dict(metrics),
                "latency_ms": latency,
                "cost_per_request": cost_per_request,
                "outputs": as_json(list(outputs)) if outputs is not None else None,
                "label_column": label_column,
            },
        )
        return from_json(EvaluationReport, data)

    def evaluations(self, ref: str) -> list[EvaluationReport]:
        data = self._http.call("GET", self._ref_path(ref, "evaluations"))
        return [from_json(EvaluationReport, r) for r in data]

    def evaluate(self, ref: str, eval_set: Snapshot | str | Path, **_: Any) -> EvaluationReport:
        self._unsupported(
            "running an evaluation (measure where the model runs, then record_evaluation)"
        )

    def compare(
        self,
        a: str,
        b: str,
        *,
        eval_set: Snapshot | str | Path,
        label_column: str = "label",
        top: int = 10,
        trusted: bool = False,
    ) -> BehaviourComparison:
        """From both versions' reports on the set that hold outputs (the server runs no
        models: record them first)."""
        pa, ra = self._split(a)
        pb, rb = self._split(b)
        if pa != pb:
            self._unsupported("comparing versions of two projects")
        data = self._http.call(
            "GET",
            f"/projects/{_seg(pa)}/compare",
            params={"a": ra, "b": rb, "eval_set": self._set_ref(eval_set, a), "top": top},
        )
        return from_json(BehaviourComparison, data)

    def check_gate(self, ref: str, to: str = "production") -> GateReport:
        data = self._http.call("GET", self._ref_path(ref, "gate"), params={"to": to})
        return from_json(GateReport, data)

    def lineage(self, ref: str) -> Lineage:
        return from_json(Lineage, self._http.call("GET", self._ref_path(ref, "lineage")))

    def openlineage(self, ref: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._http.call("GET", self._ref_path(ref, "openlineage"))
        return result

    def compare_runs(self, run_ids: Iterable[str], *, project: str | None = None) -> RunComparison:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/runs/compare", params={"run": list(run_ids)}
        )
        return from_json(RunComparison, data)

    def get_snapshot(self, ref: str, *, project: str | None = None) -> Snapshot:
        data = self._http.call("GET", f"/projects/{self._p(project)}/snapshots/{_seg(ref)}")
        return from_json(Snapshot, data)

    def snapshots(self, *, name: str | None = None, project: str | None = None) -> list[Snapshot]:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/snapshots", params={"name": name}
        )
        return [from_json(Snapshot, s) for s in data]

    def diff_snapshots(self, a: str, b: str, *, project: str | None = None) -> SnapshotDiff:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/snapshot-diff", params={"a": a, "b": b}
        )
        return from_json(SnapshotDiff, data)

    # -- retention --------------------------------------------------------------------------
    def hold(self, ref: str, *, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "POST", self._ref_path(ref, "hold"), json={"reason": reason}
        )
        return result

    def release_hold(self, ref: str, *, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "DELETE", self._ref_path(ref, "hold"), params={"reason": reason}
        )
        return result

    def holds(self) -> list[dict[str, Any]]:
        """Legal holds in every project this token may read."""
        result: list[dict[str, Any]] = self._http.call("GET", "/holds")
        return result

    def delete_artifact(self, ref: str, *, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "DELETE", self._ref_path(ref, "artifact"), params={"reason": reason}
        )
        return result

    def prune(
        self, model: str, *, keep_last: int, reason: str | None = None, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        project, name = self._model(model)
        result: list[dict[str, Any]] = self._http.call(
            "POST",
            f"/projects/{_seg(project)}/models/{_seg(name)}/prune",
            json={"keep_last": keep_last, "reason": reason, "dry_run": dry_run},
        )
        return result

    def restore(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call("POST", self._ref_path(ref, "restore"))
        return result

    def archive_of(self, ref: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._http.call("GET", self._ref_path(ref, "archive"))
        return result

    def apply_retention(self, *, dry_run: bool = False) -> list[dict[str, Any]]:
        """The server's retention policy, applied by the server (global admins)."""
        result: list[dict[str, Any]] = self._http.call(
            "POST", "/retention/apply", json={"dry_run": dry_run}
        )
        return result

    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> dict[str, Any]:
        """The server's garbage collection (global admins)."""
        result: dict[str, Any] = self._http.call(
            "POST", "/gc", json={"dry_run": dry_run, "grace_seconds": grace_seconds}
        )
        return result

    # -- making snapshots, datasets of runs -------------------------------------------------
    def snapshot(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        store: bool = False,
        project: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Snapshot:
        """Hash the files here; with ``store=True`` upload those the server lacks; then send
        the manifest."""
        from ..filecache import HashCache
        from ..limits import check_key
        from ..manifest import manifest_bytes
        from ..treehash import hash_tree

        root = Path(path)
        name = check_key(name or root.absolute().name, what="dataset")
        cache = HashCache(self.settings.home / "cache" / "file-digests.db")
        entries = hash_tree(root, cache=cache, progress=progress)
        if store:
            wanted = list(dict.fromkeys(e.digest for e in entries))
            lacking = set(self._blobs.missing(wanted)) if wanted else set()
            for entry in entries:
                if entry.digest not in lacking:
                    continue
                source = root if not root.is_dir() else root.joinpath(*entry.path.split("/"))
                self._blobs.upload(source, entry.digest, entry.size, None)
                lacking.discard(entry.digest)
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/snapshots",
            json={
                "name": name,
                "manifest_text": manifest_bytes(entries).decode("utf-8"),
                "uri": str(root.resolve()),
                "stored": store,
            },
        )
        return from_json(Snapshot, data)

    def snapshot_external(
        self, uri: str, *, name: str | None = None, project: str | None = None
    ) -> Snapshot:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/snapshots",
            json={"external": uri, "name": name},
        )
        return from_json(Snapshot, data)

    def use_dataset(
        self,
        run_id: str,
        dataset: Snapshot | str | Path,
        *,
        role: str = "train",
        name: str | None = None,
        project: str | None = None,
    ) -> Snapshot:
        snap = self._as_snapshot(dataset, name=name, project=project, store=False)
        self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{_seg(run_id)}/datasets",
            json={"snapshot": f"{snap.name}@{snap.digest}", "role": role},
        )
        return snap

    def log_artifact(
        self,
        run_id: str,
        path: str | Path,
        *,
        artifact_path: str | None = None,
        project: str | None = None,
    ) -> list[RunArtifact]:
        """Hash the files here, upload those the server lacks, then list them under the run."""
        from ..manifest import scan
        from ..service.runs import artifact_name, artifact_prefix

        root = Path(path)
        prefix = artifact_prefix(root, artifact_path)
        files = []
        for item in scan(root):
            digest = file_digest(item.source)
            files.append(
                (item, RunArtifact(artifact_name(root, prefix, item.path), digest, item.size))
            )
        wanted = list(dict.fromkeys(a.digest for _, a in files))
        lacking = set(self._blobs.missing(wanted)) if wanted else set()
        for item, art in files:
            if art.digest in lacking:
                self._blobs.upload(item.source, art.digest, art.size, None)
                lacking.discard(art.digest)
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{_seg(run_id)}/artifacts",
            json={"files": [as_json(a) for _, a in files]},
        )
        return [from_json(RunArtifact, a) for a in data]
