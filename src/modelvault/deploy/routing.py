"""The routing math: which release serves one request.

Order: a preview header, then segment rules (headers or JSON fields), then per-feature
routes, then the weighted arms. Sticky assignment hashes (deployment salt, key) with
MurmurHash3 (32-bit, seed 0) and maps the hash into ``BUCKETS`` buckets by multiply-shift,
``(h * BUCKETS) >> 32``, which keeps every bucket equally likely where a modulo would not.
Arms own fixed slices in the order they are listed, starting at bucket 0: the canary is
listed first, so raising its weight only widens its slice and never moves one of its users
back. Shadow sampling uses its own salt, so being sampled is independent of the arm.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import mmh3

from .records import BUCKETS, DeploymentSpec, Release

PREVIEW_HEADER = "x-model-preview"
FEATURE_HEADER = "x-feature"


def bucket(salt: str, key: str) -> int:
    """The bucket of *key* under *salt*: ``(murmur3_32(salt + ":" + key) * 100000) >> 32``."""
    h = mmh3.hash(f"{salt}:{key}".encode(), 0, signed=False)
    return (h * BUCKETS) >> 32


def shadow_salt(salt: str) -> str:
    return f"{salt}/shadow"


def random_bucket() -> int:
    return random.randrange(BUCKETS)


def _field(body: Any, path: str) -> str | None:
    value = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, Mapping | list) or value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def lookup(selector: str, headers: Mapping[str, str], body: Any) -> str | None:
    """The value ``header:NAME`` or ``json:FIELD`` selects from a request, if present."""
    kind, _, name = selector.partition(":")
    if kind == "header":
        return headers.get(name)
    return _field(body, name)


@dataclass(frozen=True, slots=True)
class Choice:
    release: Release
    rule: str  # arm, segment:NAME, feature:NAME, preview, fallback
    bucket: int | None
    shadows: tuple[Release, ...] = ()


class Router:
    """A deployment's spec compiled for the hot path. Releases not in *healthy* are never
    chosen: their slice falls to the stable release (or the first healthy arm)."""

    def __init__(self, spec: DeploymentSpec, salt: str, healthy: Collection[Release]) -> None:
        self.spec = spec
        self.salt = salt
        self.shadow_salt = shadow_salt(salt)
        ok = set(healthy)
        self.stable: Release | None = (
            spec.stable
            if spec.stable in ok
            else next((a.release for a in spec.arms if a.release in ok), None)
        )
        upper = 0
        bounds: list[tuple[int, Release]] = []
        for arm in spec.arms:
            upper += round(arm.weight * BUCKETS / 100)
            target = arm.release if arm.release in ok else self.stable
            if target is not None and upper > (bounds[-1][0] if bounds else 0):
                bounds.append((upper, target))
        self.bounds = tuple(bounds)
        self.segments = tuple(
            (tuple(s.match.items()), s.release, f"segment:{s.name or i}")
            for i, s in enumerate(spec.segments)
            if s.release in ok
        )
        self.features = {f.feature: f.release for f in spec.features if f.release in ok}
        self.shadows = tuple(
            (round(s.sample * BUCKETS), s.release) for s in spec.shadows if s.release in ok
        )
        self.preview = spec.preview if spec.preview in ok else None

    def choose(self, headers: Mapping[str, str], body: Any, request_id: str) -> Choice | None:
        key = lookup(self.spec.sticky, headers, body) if self.spec.sticky else None
        shadows = self._shadows(key or request_id)
        if self.preview is not None and headers.get(PREVIEW_HEADER) == "1":
            return Choice(self.preview, "preview", None, shadows)
        for conditions, release, name in self.segments:
            if all(lookup(sel, headers, body) == want for sel, want in conditions):
                return Choice(release, name, None, shadows)
        feature = headers.get(FEATURE_HEADER)
        if feature is not None and feature in self.features:
            return Choice(self.features[feature], f"feature:{feature}", None, shadows)
        b = bucket(self.salt, key) if key is not None else random_bucket()
        for upper, release in self.bounds:
            if b < upper:
                return Choice(release, "arm", b, shadows)
        if self.stable is None:
            return None
        return Choice(self.stable, "fallback", b, shadows)

    def _shadows(self, key: str) -> tuple[Release, ...]:
        if not self.shadows:
            return ()
        b = bucket(self.shadow_salt, key)
        return tuple(release for cut, release in self.shadows if b < cut)


def arm_of(spec: DeploymentSpec, salt: str, key: str) -> Release:
    """The arm a sticky *key* lands on (by the weights alone); for tests and tools."""
    b = bucket(salt, key)
    upper = 0
    for arm in spec.arms:
        upper += round(arm.weight * BUCKETS / 100)
        if b < upper:
            return arm.release
    raise AssertionError("weights do not cover every bucket")
