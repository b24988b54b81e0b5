"""The records experiment tracking returns: runs, metric points, dataset snapshots, evaluation
reports, gate outcomes and lineage. Frozen dataclasses, like the rest of the domain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain import CodeRef, EnvironmentInfo, _empty_map

RUN_STATUSES = ("running", "finished", "failed", "killed")


@dataclass(frozen=True, slots=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class RunArtifact:
    path: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A dataset snapshot: a modelvault manifest digest, or a pinned external reference."""

    project: str
    name: str
    system: str
    digest: str
    created_by: str
    created_at: datetime
    uri: str | None = None
    file_count: int | None = None
    size: int | None = None
    stored: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.digest}"


@dataclass(frozen=True, slots=True)
class RunInput:
    snapshot: Snapshot
    role: str


@dataclass(frozen=True, slots=True)
class Run:
    """A run as stored: identity, status, what was captured at start, and what was logged.

    ``metrics`` holds the last value of each series (highest step, then latest logged)."""

    id: str
    project: str
    experiment: str
    status: str
    started_at: datetime
    created_by: str
    name: str | None = None
    parent_id: str | None = None
    ended_at: datetime | None = None
    failure: str | None = None
    params: Mapping[str, Any] = field(default_factory=_empty_map)
    tags: Mapping[str, str] = field(default_factory=_empty_map)
    metrics: Mapping[str, float] = field(default_factory=_empty_map)
    code: CodeRef | None = None
    environment: EnvironmentInfo | None = None
    command: tuple[str, ...] = ()
    host: Mapping[str, Any] = field(default_factory=_empty_map)
    inputs: tuple[RunInput, ...] = ()
    artifacts: tuple[RunArtifact, ...] = ()
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunComparison:
    """Runs side by side: for each param and metric key, the value in every run (None when
    absent); ``differs`` lists the keys whose values are not all equal."""

    runs: tuple[str, ...]
    params: Mapping[str, tuple[Any, ...]]
    metrics: Mapping[str, tuple[float | None, ...]]
    differs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    a: str | None
    b: str | None


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    a: str
    b: str
    added: tuple[FileChange, ...]
    removed: tuple[FileChange, ...]
    changed: tuple[FileChange, ...]

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """An immutable evaluation of one version on one evaluation set (a snapshot digest).

    ``outdated`` is computed when read: a newer snapshot with the same name exists."""

    id: int
    version: str
    eval_set: str
    digest: str
    created_by: str
    created_at: datetime
    eval_set_name: str | None = None
    metrics: Mapping[str, float] = field(default_factory=_empty_map)
    latency_ms: Mapping[str, float] = field(default_factory=_empty_map)
    cost_per_request: float | None = None
    examples: int | None = None
    outputs_digest: str | None = None
    outdated: bool = False

    def values(self) -> dict[str, float]:
        """Metrics plus latency and cost under the names gate rules use."""
        out = dict(self.metrics)
        for q, v in self.latency_ms.items():
            out[f"{q}_latency_ms"] = v
        if self.cost_per_request is not None:
            out["cost_per_request"] = self.cost_per_request
        return out


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One rule of a gate: what it requires, what the version has, and the outcome."""

    rule: str
    required: str
    actual: str
    passed: bool


@dataclass(frozen=True, slots=True)
class GateReport:
    version: str
    stage: str
    checks: tuple[GateCheck, ...]
    eval_set: str | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass(frozen=True, slots=True)
class ExampleChange:
    index: int
    label: Any
    a: Any
    b: Any
    distance: float


@dataclass(frozen=True, slots=True)
class BehaviourComparison:
    """Two versions on one evaluation set: metric deltas, how often their outputs agree, and
    the examples whose outputs moved most."""

    a: str
    b: str
    eval_set: str
    examples: int
    metrics: Mapping[str, tuple[float | None, float | None, float | None]]
    agreement: float
    changed: tuple[ExampleChange, ...]


@dataclass(frozen=True, slots=True)
class LineageNode:
    """One node of a lineage tree: kind (version, run, dataset, code, report, deployment),
    its identity, a few facts, and its own upstream or downstream nodes."""

    kind: str
    id: str
    facts: Mapping[str, Any] = field(default_factory=_empty_map)
    children: tuple[LineageNode, ...] = ()


@dataclass(frozen=True, slots=True)
class Lineage:
    root: str
    upstream: tuple[LineageNode, ...]
    downstream: tuple[LineageNode, ...]
