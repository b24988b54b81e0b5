"""modelvault: versioning and management of machine-learning models in production.

Public names are loaded lazily so ``import modelvault`` stays light; everything a user may
import is listed in ``__all__``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .capture.seeds import seed_everything
    from .deploy.records import (
        ArmStats,
        Deployment,
        DeploymentSpec,
        GuardrailResult,
        Release,
        RolloutStatus,
    )
    from .domain import (
        AliasInterval,
        Approval,
        AuditEvent,
        AuditVerification,
        Change,
        CodeRef,
        DatasetRef,
        EnvironmentInfo,
        FileEntry,
        Manifest,
        Model,
        PullResult,
        SchemaStatus,
        StageInterval,
        Transition,
        Version,
        VersionDiff,
    )
    from .errors import (
        AlreadyExists,
        AuditChainBroken,
        Conflict,
        Forbidden,
        GateFailed,
        IntegrityError,
        InvalidInput,
        ModelVaultError,
        NotFound,
        QuerySyntaxError,
        StoreError,
        Unauthenticated,
    )
    from .lifecycle import Stage
    from .registry import Registry
    from .settings import Settings
    from .tracking.active import ActiveRun, active_run
    from .tracking.api import evaluate, snapshot, start_run
    from .tracking.autolog import autolog
    from .tracking.records import (
        BehaviourComparison,
        EvaluationReport,
        GateCheck,
        GateReport,
        Lineage,
        LineageNode,
        MetricPoint,
        Run,
        RunComparison,
        Snapshot,
        SnapshotDiff,
    )

_EXPORTS = {
    "ActiveRun": "tracking.active",
    "AliasInterval": "domain",
    "AlreadyExists": "errors",
    "Approval": "domain",
    "ArmStats": "deploy.records",
    "AuditChainBroken": "errors",
    "AuditEvent": "domain",
    "AuditVerification": "domain",
    "BehaviourComparison": "tracking.records",
    "Change": "domain",
    "CodeRef": "domain",
    "Conflict": "errors",
    "DatasetRef": "domain",
    "Deployment": "deploy.records",
    "DeploymentSpec": "deploy.records",
    "EnvironmentInfo": "domain",
    "EvaluationReport": "tracking.records",
    "FileEntry": "domain",
    "Forbidden": "errors",
    "GateCheck": "tracking.records",
    "GateFailed": "errors",
    "GateReport": "tracking.records",
    "GuardrailResult": "deploy.records",
    "IntegrityError": "errors",
    "InvalidInput": "errors",
    "Lineage": "tracking.records",
    "LineageNode": "tracking.records",
    "Manifest": "domain",
    "MetricPoint": "tracking.records",
    "Model": "domain",
    "ModelVaultError": "errors",
    "NotFound": "errors",
    "PullResult": "domain",
    "QuerySyntaxError": "errors",
    "Registry": "registry",
    "Release": "deploy.records",
    "RolloutStatus": "deploy.records",
    "Run": "tracking.records",
    "RunComparison": "tracking.records",
    "SchemaStatus": "domain",
    "Settings": "settings",
    "Snapshot": "tracking.records",
    "SnapshotDiff": "tracking.records",
    "Stage": "lifecycle",
    "StageInterval": "domain",
    "StoreError": "errors",
    "Transition": "domain",
    "Unauthenticated": "errors",
    "Version": "domain",
    "VersionDiff": "domain",
    "active_run": "tracking.active",
    "autolog": "tracking.autolog",
    "evaluate": "tracking.api",
    "seed_everything": "capture.seeds",
    "snapshot": "tracking.api",
    "start_run": "tracking.api",
}

__all__ = [
    "ActiveRun",
    "AliasInterval",
    "AlreadyExists",
    "Approval",
    "ArmStats",
    "AuditChainBroken",
    "AuditEvent",
    "AuditVerification",
    "BehaviourComparison",
    "Change",
    "CodeRef",
    "Conflict",
    "DatasetRef",
    "Deployment",
    "DeploymentSpec",
    "EnvironmentInfo",
    "EvaluationReport",
    "FileEntry",
    "Forbidden",
    "GateCheck",
    "GateFailed",
    "GateReport",
    "GuardrailResult",
    "IntegrityError",
    "InvalidInput",
    "Lineage",
    "LineageNode",
    "Manifest",
    "MetricPoint",
    "Model",
    "ModelVaultError",
    "NotFound",
    "PullResult",
    "QuerySyntaxError",
    "Registry",
    "Release",
    "RolloutStatus",
    "Run",
    "RunComparison",
    "SchemaStatus",
    "Settings",
    "Snapshot",
    "SnapshotDiff",
    "Stage",
    "StageInterval",
    "StoreError",
    "Transition",
    "Unauthenticated",
    "Version",
    "VersionDiff",
    "__version__",
    "active_run",
    "autolog",
    "evaluate",
    "seed_everything",
    "snapshot",
    "start_run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelvault' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
