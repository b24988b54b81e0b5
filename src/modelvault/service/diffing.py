"""``diff``: how two versions differ in params, metrics, data, code, packages, files, config."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..domain import Change, Version, VersionDiff, as_json
from .artifacts import read_manifest
from .context import Context


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def compare_maps(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[Change, ...]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if key in a and key in b and va == vb:
            continue
        na, nb = _number(va), _number(vb)
        delta = nb - na if na is not None and nb is not None else None
        out.append(
            Change(key=key, a=va if key in a else None, b=vb if key in b else None, delta=delta)
        )
    return tuple(out)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: value}


def _datasets(v: Version) -> dict[str, Any]:
    return {(d.name or d.uri or d.digest or "?"): as_json(d) for d in v.datasets}


def _packages(ctx: Context, v: Version) -> dict[str, str]:
    if v.environment is None or v.environment.packages_digest is None:
        return {}
    data = json.loads(ctx.blobs.read_bytes(v.environment.packages_digest))
    return {str(k): str(val) for k, val in data.items()}


def _packages_diff(a: dict[str, str], b: dict[str, str]) -> tuple[Change, ...]:
    changes = compare_maps(a, b)
    return tuple(Change(key=c.key, a=c.a, b=c.b, delta=None) for c in changes)


def diff(ctx: Context, a: Version, b: Version) -> VersionDiff:
    code_a = as_json(a.code) if a.code else {}
    code_b = as_json(b.code) if b.code else {}
    files_a = {f.path: f.digest for f in read_manifest(ctx, a.artifact_digest).files}
    files_b = {f.path: f.digest for f in read_manifest(ctx, b.artifact_digest).files}
    env_a = as_json(a.environment) if a.environment else {}
    env_b = as_json(b.environment) if b.environment else {}
    other_a = {
        "kind": a.kind,
        "label": a.label,
        "parents": list(a.parents),
        "components": list(a.components),
        "inference_config": a.inference_config,
        "flavor": a.flavor,
        **{f"environment.{k}": v for k, v in env_a.items() if k != "packages_digest"},
    }
    other_b = {
        "kind": b.kind,
        "label": b.label,
        "parents": list(b.parents),
        "components": list(b.components),
        "inference_config": b.inference_config,
        "flavor": b.flavor,
        **{f"environment.{k}": v for k, v in env_b.items() if k != "packages_digest"},
    }
    return VersionDiff(
        a=str(a.ref),
        b=str(b.ref),
        params=compare_maps(a.params, b.params),
        metrics=compare_maps(a.metrics, b.metrics),
        tags=compare_maps(a.tags, b.tags),
        datasets=compare_maps(_datasets(a), _datasets(b)),
        code=compare_maps(code_a, code_b),
        packages=_packages_diff(_packages(ctx, a), _packages(ctx, b)),
        files=tuple(Change(key=c.key, a=c.a, b=c.b) for c in compare_maps(files_a, files_b)),
        config=compare_maps(_flatten(dict(a.config or {})), _flatten(dict(b.config or {}))),
        other=compare_maps(other_a, other_b),
        feature_pipeline=compare_maps(
            {"feature_pipeline": a.feature_pipeline}, {"feature_pipeline": b.feature_pipeline}
        ),
    )
