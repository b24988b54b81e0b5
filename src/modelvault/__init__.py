"""modelvault: versioning and management of machine-learning models in production.

Public names are loaded lazily so ``import modelvault`` stays light; everything a user may
import is listed in ``__all__``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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
    )
    from .lifecycle import Stage
    from .registry import Registry
    from .settings import Settings

_EXPORTS = {
    "AliasInterval": "domain",
    "AlreadyExists": "errors",
    "Approval": "domain",
    "AuditChainBroken": "errors",
    "AuditEvent": "domain",
    "AuditVerification": "domain",
    "Change": "domain",
    "CodeRef": "domain",
    "Conflict": "errors",
    "DatasetRef": "domain",
    "EnvironmentInfo": "domain",
    "FileEntry": "domain",
    "Forbidden": "errors",
    "GateFailed": "errors",
    "IntegrityError": "errors",
    "InvalidInput": "errors",
    "Manifest": "domain",
    "Model": "domain",
    "ModelVaultError": "errors",
    "NotFound": "errors",
    "PullResult": "domain",
    "QuerySyntaxError": "errors",
    "Registry": "registry",
    "Settings": "settings",
    "Stage": "lifecycle",
    "StageInterval": "domain",
    "StoreError": "errors",
    "Transition": "domain",
    "Version": "domain",
    "VersionDiff": "domain",
}

__all__ = [
    "AliasInterval",
    "AlreadyExists",
    "Approval",
    "AuditChainBroken",
    "AuditEvent",
    "AuditVerification",
    "Change",
    "CodeRef",
    "Conflict",
    "DatasetRef",
    "EnvironmentInfo",
    "FileEntry",
    "Forbidden",
    "GateFailed",
    "IntegrityError",
    "InvalidInput",
    "Manifest",
    "Model",
    "ModelVaultError",
    "NotFound",
    "PullResult",
    "QuerySyntaxError",
    "Registry",
    "Settings",
    "Stage",
    "StageInterval",
    "StoreError",
    "Transition",
    "Version",
    "VersionDiff",
    "__version__",
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
