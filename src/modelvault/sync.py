"""Offline first: versions registered locally, with no server reachable, pushed later with
``modelvault sync push --to URL``.

Each version keeps its number, registration time, author and digest (the server recomputes
the digest from the pushed record and refuses a mismatch), oldest first so parents and
numbers line up. Pushing is idempotent: a version the server already holds with the same
digest is skipped; a number the server gave to a different version stops the push with a
clear conflict. Only the bytes the server lacks are sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .domain import Version, as_json
from .errors import Conflict, NotFound
from .registry import Registry
from .remote import RemoteRegistry


def _blobs_of(local: Registry, version: Version) -> tuple[list[str], list[tuple[str, str]]]:
    manifest = local.manifest(version.ref)
    digests = [version.artifact_digest, *(f.digest for f in manifest.files)]
    extra: list[tuple[str, str]] = []
    if version.environment is not None and version.environment.packages_digest:
        extra.append((version.environment.packages_digest, "packages"))
    if version.code is not None and version.code.diff_digest:
        extra.append((version.code.diff_digest, "code-diff"))
    return list(dict.fromkeys(digests + [d for d, _ in extra])), extra


def _send_blobs(local: Registry, remote: RemoteRegistry, digests: list[str]) -> int:
    store: Any = local._ctx.blobs
    sent = 0
    for digest in remote._blobs.missing(digests):
        path = Path(store.path_of(digest)) if hasattr(store, "path_of") else None
        if path is not None and path.exists():
            remote._blobs.upload(path, digest, path.stat().st_size, None)
        else:  # an object store's, or one kept in the metadata store (inlineblobs)
            remote._blobs.put_bytes(store.read_bytes(digest))
        sent += 1
    return sent


def _body(version: Version, extra: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "kind": version.kind,
        "manifest": version.artifact_digest,
        "params": dict(version.params),
        "metrics": dict(version.metrics),
        "tags": dict(version.tags),
        "datasets": [as_json(d) for d in version.datasets],
        "parents": list(version.parents),
        "components": list(version.components),
        "label": version.label,
        "description": version.description,
        "config": as_json(version.config) if version.config is not None else None,
        "feature_pipeline": version.feature_pipeline,
        "inference_config": version.inference_config,
        "flavor": version.flavor,
        "code": as_json(version.code),
        "environment": as_json(version.environment),
        "extra_blobs": [list(pair) for pair in extra],
        "run": version.run_id,
        "pushed": {
            "number": version.number,
            "created_at": as_json(version.created_at),
            "created_by": version.created_by,
            "digest": version.digest,
        },
    }


def push(local: Registry, remote: RemoteRegistry, *, project: str | None = None) -> dict[str, Any]:
    """Push every version of *project* (the local default) that the server lacks."""
    proj = project or local.settings.project
    versions = [v for m in local.models(project=proj) for v in local.versions(m.name, project=proj)]
    versions.sort(key=lambda v: (v.created_at, v.model, v.number))
    pushed: list[str] = []
    skipped: list[str] = []
    blobs = 0
    for version in versions:
        try:
            there = remote.get(version.ref)
        except NotFound:
            there = None
        if there is not None:
            if there.digest != version.digest:
                raise Conflict(
                    f"{version.ref} is another version on the server ({there.digest}); "
                    "nothing after it was pushed",
                    model=version.model,
                    version=version.number,
                )
            skipped.append(version.ref)
            continue
        digests, extra = _blobs_of(local, version)
        blobs += _send_blobs(local, remote, digests)
        data = remote._http.call(
            "POST",
            f"/projects/{proj}/models/{version.model}/versions",
            json=_body(version, extra),
        )
        if data["digest"] != version.digest:  # the server checks this too
            raise Conflict(f"{version.ref} arrived with another digest", model=version.model)
        pushed.append(version.ref)
    return {"project": proj, "pushed": pushed, "skipped": skipped, "blobs_sent": blobs}
