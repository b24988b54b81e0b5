"""The domain records modelvault returns: frozen dataclasses, never database rows.

``as_json`` turns any of them into plain JSON-ready data; that is the shape the CLI prints
with ``--json`` (documented in docs/cli.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .timeutil import to_text

Scalar = str | int | float | bool | None


def frozen_map(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


def _empty_map() -> Mapping[str, Any]:
    return MappingProxyType({})


_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def as_json(value: Any) -> Any:
    """Plain JSON-ready data for a domain object (dataclasses, mappings, times, enums)."""
    cls = type(value)
    if cls in _PLAIN:  # the common case first: the server answers every request through here
        return value
    if cls in _FIELDS or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return {name: as_json(getattr(value, name)) for name in _field_names(cls)}
    if isinstance(value, Mapping):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, datetime):
        return to_text(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of an artifact: its path relative to the artifact root, size, digest, mode."""

    path: str
    size: int
    digest: str
    mode: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """The artifact of a version: the list of its files, named by the digest of its bytes."""

    digest: str
    files: tuple[FileEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class CodeRef:
    """Where the code that produced a version came from."""

    commit: str | None
    branch: str | None = None
    remote: str | None = None
    dirty: bool = False
    diff_digest: str | None = None
    untracked: int = 0


@dataclass(frozen=True, slots=True)
class EnvironmentInfo:
    """The environment a version was made in; the package list lives in a blob by digest."""

    python: str
    implementation: str
    platform: str
    machine: str
    cpu_model: str | None
    cpu_count: int | None
    gpus: tuple[str, ...] = ()
    cuda: str | None = None
    seed: int | None = None
    packages_digest: str | None = None
    package_count: int = 0
    memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A data snapshot a version used: a modelvault digest or a pinned external reference."""

    name: str | None
    system: str
    uri: str | None = None
    digest: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """An immutable model version, with the stage it held when it was read."""

    project: str
    model: str
    number: int
    kind: str
    digest: str
    artifact_digest: str
    created_by: str
    created_at: datetime
    stage: str
    label: str | None = None
    size: int = 0
    file_count: int = 0
    params: Mapping[str, Scalar] = field(default_factory=_empty_map)
    metrics: Mapping[str, float] = field(default_factory=_empty_map)
    tags: Mapping[str, str] = field(default_factory=_empty_map)
    datasets: tuple[DatasetRef, ...] = ()
    code: CodeRef | None = None
    environment: EnvironmentInfo | None = None
    parents: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    config: Mapping[str, Any] | None = None
    feature_pipeline: str | None = None
    inference_config: str | None = None
    description: str | None = None
    flavor: str | None = None
    run_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.project}/{self.model}:{self.number}"

    def __str__(self) -> str:
        return f"{self.model}:{self.number}"


@dataclass(frozen=True, slots=True)
class Model:
    project: str
    name: str
    created_by: str
    created_at: datetime
    latest_version: int
    production_version: int | None


@dataclass(frozen=True, slots=True)
class Approval:
    project: str
    model: str
    version: int
    approver: str
    created_at: datetime
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """A stage change as it happened: which version moved where, and what it displaced."""

    project: str
    model: str
    version: int
    from_stage: str
    to_stage: str
    actor: str
    at: datetime
    audit_seq: int
    reason: str | None = None
    replaced: int | None = None


@dataclass(frozen=True, slots=True)
class StageInterval:
    project: str
    model: str
    version: int
    stage: str
    valid_from: datetime
    valid_to: datetime | None
    set_by: str
    reason: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AliasInterval:
    project: str
    model: str
    alias: str
    version: int
    valid_from: datetime
    valid_to: datetime | None
    set_by: str
    removed_by: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    ts: datetime
    actor: str
    action: str
    project: str | None
    model: str | None
    subject: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    reason: str | None
    prev_hash: str
    hash: str
    # SHA-256(salt ‖ actor), what the hash covers instead of the actor (None: an event from
    # before pseudonymization, hashed over its actor in clear)
    actor_commitment: str | None = None


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """Outcome of recomputing the audit chain; ``first_bad_seq`` is None when it verifies."""

    ok: bool
    events: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    check: str | None = None  # chain | tree | signature | witness: which check failed
    checkpoints: int = 0


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the metadata database's schema stands against this release's migrations.

    ``state``: ``current`` (at head), ``behind`` (an upgrade is due), ``empty`` (no schema
    yet), ``unversioned`` (made before migrations existed) or ``ahead`` (made by a newer
    release). ``applied`` lists the revisions an upgrade ran, oldest first; ``stamped`` the
    revision an unversioned database was recorded at without running anything."""

    db: str
    revision: str | None
    head: str
    state: str
    applied: tuple[str, ...] = ()
    stamped: str | None = None


@dataclass(frozen=True, slots=True)
class PullResult:
    ref: str
    dest: str
    files: tuple[str, ...]
    bytes: int


@dataclass(frozen=True, slots=True)
class Change:
    """One changed entry of a diff: key, value in A, value in B, and for numbers the delta."""

    key: str
    a: Any
    b: Any
    delta: float | None = None


@dataclass(frozen=True, slots=True)
class VersionDiff:
    a: str
    b: str
    params: tuple[Change, ...]
    metrics: tuple[Change, ...]
    tags: tuple[Change, ...]
    datasets: tuple[Change, ...]
    code: tuple[Change, ...]
    packages: tuple[Change, ...]
    files: tuple[Change, ...]
    config: tuple[Change, ...]
    other: tuple[Change, ...]
    # a changed feature pipeline means inputs must be rebuilt: flagged on its own
    feature_pipeline: tuple[Change, ...] = ()

    @property
    def pipeline_changed(self) -> bool:
        return bool(self.feature_pipeline)

    @property
    def identical(self) -> bool:
        return not any(
            (
                self.params,
                self.metrics,
                self.tags,
                self.datasets,
                self.code,
                self.packages,
                self.files,
                self.config,
                self.other,
                self.feature_pipeline,
            )
        )
