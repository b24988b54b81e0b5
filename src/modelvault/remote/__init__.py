"""The remote registry: ``Registry("http://host:7310", token=...)`` speaks to a modelvault
server with the same methods, return types and exceptions as a local registry.

This module holds versions, lifecycle and runs; the other parts live beside it
(``auditing``: audit log and webhooks, ``deploying``: deployments, ``evaluating``:
evaluations, gates, lineage, snapshots and run artifacts, ``retaining``: holds, retention
and gc), on the shared plumbing of ``base``.

Registration hashes the files here. Small files (up to ``INLINE_FILE`` bytes each,
``INLINE_TOTAL`` in all) travel inside the registration request, so a typical version is one
request; for larger ones it asks the server which blobs it lacks and uploads only those, and
large files (``CHUNKED_FROM`` up) go in resumable chunks, hashed as they are sent unless this
machine's digest cache knows them (see ``blobs``); then it registers the version from its
manifest; code and environment are captured on this machine, where the model was made. Pulls
verify every file's digest as it is written. Deployment specs read from a file are sent as
their document; a gateway reads the store directly, so it runs where the store is; the server
runs no models, so ``evaluate`` stays where the model runs. Snapshots and run artifacts are
hashed here and their files uploaded like a version's. Registering from a run takes the run's
record on the server (and, without a PATH, the model the run logged under ``model/``).
"""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..blobs.base import checked_digest
from ..canonical import sha256_digest
from ..domain import (
    AliasInterval,
    Approval,
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
from ..filecache import HashCache
from ..registry import ProgressFactory
from ..settings import Settings
from ..timeutil import Clock, to_text
from ..tracking.records import (
    MetricPoint,
    Run,
)
from ..wire import from_json
from .auditing import RemoteAudit
from .base import RemoteBase, seg
from .blobs import RemoteBlobStore, file_digest
from .deploying import RemoteDeployments
from .evaluating import RemoteEvaluations
from .http import Transport
from .retaining import RemoteRetention

__all__ = ["INLINE_FILE", "INLINE_TOTAL", "RemoteRegistry"]

INLINE_FILE = 256 << 10  # a file this small is sent with the version, not uploaded apart
INLINE_TOTAL = 4 << 20  # and no more than this much inline per registration


class RemoteRegistry(
    RemoteAudit, RemoteDeployments, RemoteEvaluations, RemoteRetention, RemoteBase
):
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
        self._blobs = RemoteBlobStore(
            self._http, HashCache(base.home / "cache" / "file-digests.db")
        )
        self._user: str | None = None
        self._auto_checkpoint = None

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.url!r})"

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
        inline: dict[str, bytes] = {}  # digest -> base64 of a small file's bytes
        if req.path is not None:
            scanned = scan(req.path)
            tick = progress(2 * sum(f.size for f in scanned)) if progress else None
            entries = []
            room = INLINE_TOTAL
            sent: set[str] = set()  # large files sent as they were hashed
            for item in scanned:
                data = None
                known = None
                if item.size <= INLINE_FILE and item.size <= room:
                    data = item.source.read_bytes()
                    digest = sha256_digest(data)
                elif item.size < self._blobs.chunked_from or (
                    known := self._blobs.known_digest(item.source)
                ):
                    digest = known or file_digest(item.source)
                else:
                    step = (lambda n: tick(2 * n)) if tick is not None else None
                    digest = self._blobs.send_file(item.source, progress=step).digest
                    sent.add(digest)
                if tick is not None and digest not in sent:
                    tick(item.size)
                entries.append(FileEntry(item.path, item.size, digest, item.mode))
                fresh = digest not in self._blobs.present and digest not in inline
                if data is not None and len(data) == item.size and fresh:
                    inline[digest] = base64.b64encode(data)
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
                elif tick is not None and digest not in sent:
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
            "run": run,
        }
        path_ = f"/projects/{seg(project)}/models/{seg(model)}/versions"
        try:
            data = self._http.call("POST", path_, encoded=_with_blobs(body, inline))
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
        data = self._http.call("GET", f"/projects/{seg(project)}/refs/{seg(rest)}", params=params)
        return from_json(Version, data)

    def models(self, *, project: str | None = None) -> list[Model]:
        data = self._http.call("GET", f"/projects/{self._p(project)}/models")
        return [from_json(Model, m) for m in data]

    def versions(self, model: str, *, project: str | None = None) -> list[Version]:
        proj, name = self._model(model) if project is None else (project, model)
        data = self._http.call("GET", f"/projects/{seg(proj)}/models/{seg(name)}/versions")
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
        data = self._http.call("GET", f"/projects/{seg(project)}/refs/{seg(rest)}/manifest")
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
        data = self._http.call("GET", f"/projects/{seg(pa)}/diff", params={"a": ra, "b": rb})
        return from_json(VersionDiff, data)

    # -- lifecycle --------------------------------------------------------------------------
    def approve(self, ref: str, *, comment: str | None = None) -> Approval:
        project, rest = self._split(ref)
        data = self._http.call(
            "POST",
            f"/projects/{seg(project)}/refs/{seg(rest)}/approvals",
            json={"comment": comment},
        )
        return from_json(Approval, data)

    def approvals(self, ref: str) -> list[Approval]:
        project, rest = self._split(ref)
        data = self._http.call("GET", f"/projects/{seg(project)}/refs/{seg(rest)}/approvals")
        return [from_json(Approval, a) for a in data]

    def promote(
        self, ref: str, to: str, *, reason: str | None = None, override: bool = False
    ) -> Transition:
        project, rest = self._split(ref)
        data = self._http.call(
            "POST",
            f"/projects/{seg(project)}/refs/{seg(rest)}/promote",
            json={"to": to, "reason": reason, "override": override},
        )
        return from_json(Transition, data)

    def rollback(self, model: str, *, reason: str, to: int | None = None) -> Transition:
        project, name = self._model(model)
        data = self._http.call(
            "POST",
            f"/projects/{seg(project)}/models/{seg(name)}/rollback",
            json={"reason": reason, "to": to},
        )
        return from_json(Transition, data)

    def stage_history(self, model: str) -> list[StageInterval]:
        project, name = self._model(model)
        data = self._http.call("GET", f"/projects/{seg(project)}/models/{seg(name)}/stages")
        return [from_json(StageInterval, s) for s in data]

    def set_alias(self, model: str, alias: str, ref: str, *, expect: Any = None) -> AliasInterval:
        project, name = self._model(model)
        data = self._http.call(
            "PUT",
            f"/projects/{seg(project)}/models/{seg(name)}/aliases/{seg(alias)}",
            json={"ref": ref, "expect": expect},
        )
        return from_json(AliasInterval, data)

    def remove_alias(self, model: str, alias: str, *, expect: Any = None) -> AliasInterval:
        project, name = self._model(model)
        data = self._http.call(
            "DELETE",
            f"/projects/{seg(project)}/models/{seg(name)}/aliases/{seg(alias)}",
            params={"expect": expect},
        )
        return from_json(AliasInterval, data)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasInterval]:
        project, name = self._model(model)
        data = self._http.call(
            "GET", f"/projects/{seg(project)}/models/{seg(name)}/aliases", params={"alias": alias}
        )
        return [from_json(AliasInterval, a) for a in data]

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
            f"/projects/{seg(project)}/runs",
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
        data = self._http.call("GET", f"/projects/{self._p(project)}/runs/{seg(run_id)}")
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
            "GET", f"/projects/{self._p(project)}/runs/{seg(run_id)}/metrics/{seg(key)}"
        )
        return [from_json(MetricPoint, p) for p in data]

    def log_params(
        self, run_id: str, params: Mapping[str, Any], *, project: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{seg(run_id)}/params",
            json={"params": dict(params)},
        )
        return result

    def set_run_tags(
        self, run_id: str, tags: Mapping[str, str], *, project: str | None = None
    ) -> None:
        self._http.request(
            "POST",
            f"/projects/{self._p(project)}/runs/{seg(run_id)}/tags",
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
            f"/projects/{self._p(project)}/runs/{seg(run_id)}/metrics",
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
            f"/projects/{self._p(project)}/runs/{seg(run_id)}/end",
            json={"status": status, "failure": failure},
        )
        return from_json(Run, data)


def _with_blobs(body: dict[str, Any], blobs: Mapping[str, bytes]) -> bytes:
    """*body* (not empty) as JSON, with ``"blobs"``: digest -> base64 text added as it is.
    ``json.dumps`` looks at a long string one character at a time (≈ 0.2 ms for the base64
    of a 64 KiB file); neither a digest nor base64 text holds a character JSON escapes."""
    head = jsonlib.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    parts = [head[:-1], b',"blobs":{']
    for i, (digest, text) in enumerate(blobs.items()):
        parts += [b',"' if i else b'"', checked_digest(digest).encode("ascii"), b'":"', text, b'"']
    parts.append(b"}}")
    return b"".join(parts)
