"""Frozen records of the deployment manager: what runs where, with which traffic policy.

A deployment's desired state (``DeploymentSpec``) is stored as canonical JSON in an interval
row; ``Deployment`` is that state as it held over one interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BUCKETS = 100_000
DEFAULT_ENVIRONMENTS = ("development", "staging", "production")


def _empty() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True, order=True)
class Release:
    """What a gateway serves: a model version, optionally with an inference config version."""

    model: str
    version: int
    config_model: str | None = None
    config_version: int | None = None

    @property
    def key(self) -> str:
        base = f"{self.model}:{self.version}"
        if self.config_model is None:
            return base
        return f"{base}+{self.config_model}:{self.config_version}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class Arm:
    release: Release
    weight: float


@dataclass(frozen=True, slots=True)
class Segment:
    """Requests whose headers or JSON fields all match go to *release*."""

    match: Mapping[str, str]
    release: Release
    name: str = ""


@dataclass(frozen=True, slots=True)
class FeatureRoute:
    """Requests for one product feature (``X-Feature`` header) go to *release*."""

    feature: str
    release: Release


@dataclass(frozen=True, slots=True)
class Shadow:
    release: Release
    sample: float


@dataclass(frozen=True, slots=True)
class Guardrail:
    """``metric op threshold`` (times the stable arm's value when *relative*), judged over
    the last *window_s* seconds once the canary has *min_samples* requests."""

    rule: str
    metric: str
    op: str
    threshold: float
    relative: bool = False
    window_s: float = 300.0
    min_samples: int = 100
    failure_limit: int = 1
    on_inconclusive: str = "hold"
    offset: bool = False  # limit = the stable release's value + threshold


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    candidate: Release
    stable: Release
    steps: tuple[float, ...]
    bake_s: float
    step: int = 0
    status: str = "running"  # running, paused, complete, aborted
    step_started: str = ""
    reason: str | None = None

    @property
    def weight(self) -> float:
        if self.status == "aborted":
            return 0.0
        return self.steps[self.step]


@dataclass(frozen=True, slots=True)
class Standby:
    release: Release
    until: str


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """The desired state of one deployment (environment x model)."""

    arms: tuple[Arm, ...]
    sticky: str | None = None
    segments: tuple[Segment, ...] = ()
    features: tuple[FeatureRoute, ...] = ()
    shadows: tuple[Shadow, ...] = ()
    rollout: RolloutPlan | None = None
    guardrails: tuple[Guardrail, ...] = ()
    standby: Standby | None = None
    preview: Release | None = None

    @property
    def stable(self) -> Release:
        """The release that takes all traffic when anything goes wrong."""
        if self.rollout is not None and self.rollout.status != "complete":
            return self.rollout.stable
        return max(self.arms, key=lambda a: a.weight).release

    def releases(self) -> list[Release]:
        """Every release the gateway must hold loaded for this spec, deduplicated."""
        found: list[Release] = [a.release for a in self.arms]
        found += [s.release for s in self.segments]
        found += [f.release for f in self.features]
        found += [s.release for s in self.shadows]
        if self.rollout is not None and self.rollout.status in ("running", "paused"):
            found += [self.rollout.stable, self.rollout.candidate]
        if self.standby is not None:
            found.append(self.standby.release)
        if self.preview is not None:
            found.append(self.preview)
        return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment's state over one interval of its history."""

    project: str
    environment: str
    model: str
    revision: int
    salt: str
    spec: DeploymentSpec
    valid_from: datetime
    valid_to: datetime | None
    set_by: str
    reason: str | None
    audit_seq: int

    @property
    def name(self) -> str:
        return f"{self.project}/{self.environment}/{self.model}"


@dataclass(frozen=True, slots=True)
class Environment:
    project: str
    name: str
    builtin: bool
    created_by: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Measurements of one release of a deployment over a window, summed over replicas."""

    release: str
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    shadow_compared: int = 0
    shadow_agreement: float | None = None
    shadow_mean_abs_diff: float | None = None
    shadow_max_abs_diff: float | None = None
    shadow_errors: int = 0
    feedback_rows: int = 0
    accuracy: float | None = None
    feedback_scored: int = 0
    mean_abs_error: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    rule: str
    verdict: str  # pass, breach, inconclusive
    measured: float | None
    limit: float | None
    samples: int
    window_s: float
    window_from: datetime
    window_to: datetime
    detail: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    deployment: Deployment
    arms: tuple[ArmStats, ...]
    shadows: tuple[ArmStats, ...]
    guardrails: tuple[GuardrailResult, ...]
    bake_remaining_s: float | None
