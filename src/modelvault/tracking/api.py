"""The module-level tracking functions (``modelvault.start_run``, ``autolog``, ``snapshot``,
``evaluate``…). They act on the registry of the active run, else on a default ``Registry()``
opened from the environment on first use."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..registry import Registry
    from .active import ActiveRun
    from .records import EvaluationReport, Snapshot

_default: list[Registry] = []
_lock = threading.Lock()


def default_registry() -> Registry:
    """The registry the module-level functions use: the active run's, else one opened from
    the environment (``MODELVAULT_HOME``, ``MODELVAULT_DB`` …) once per process."""
    from .active import active_run

    run = active_run()
    if run is not None:
        return run.registry
    with _lock:
        if not _default:
            from ..registry import Registry

            _default.append(Registry())
        return _default[0]


def set_default_registry(registry: Registry | None) -> None:
    """Use *registry* for the module-level functions (None: open from the environment again)."""
    with _lock:
        _default.clear()
        if registry is not None:
            _default.append(registry)


def start_run(experiment: str = "default", **kwargs: Any) -> ActiveRun:
    """``with modelvault.start_run(experiment="fraud") as run:`` — see Registry.start_run."""
    return default_registry().start_run(experiment, **kwargs)


def snapshot(path: str | Path, *, name: str | None = None, store: bool = False) -> Snapshot:
    return default_registry().snapshot(path, name=name, store=store)


def evaluate(ref: str, eval_set: Any, **kwargs: Any) -> EvaluationReport:
    return default_registry().evaluate(ref, eval_set, **kwargs)
