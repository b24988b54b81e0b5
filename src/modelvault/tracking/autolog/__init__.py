"""Automatic logging: ``modelvault.autolog()`` hooks the training calls of the libraries it
knows, so runs record params, timings, scores and the fitted model with no logging code.

Each integration is one module exposing ``enable(config) -> undo``; adding a library means
adding a module and a line to ``INTEGRATIONS``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...errors import InvalidInput


@dataclass(frozen=True, slots=True)
class AutologConfig:
    experiment: str = "default"
    log_models: bool = True


# library (as imported) -> module of this package that hooks it
INTEGRATIONS: dict[str, str] = {"sklearn": "sklearn"}

_enabled: dict[str, Callable[[], None]] = {}


def autolog(
    libraries: Sequence[str] | None = None,
    *,
    disable: bool = False,
    experiment: str = "default",
    log_models: bool = True,
) -> list[str]:
    """Turn automatic logging on (or off with ``disable=True``) for *libraries* (default:
    every known library that is installed). Returns the libraries now hooked."""
    wanted = list(libraries) if libraries is not None else list(INTEGRATIONS)
    unknown = [name for name in wanted if name not in INTEGRATIONS]
    if unknown:
        raise InvalidInput(
            f"autolog knows {', '.join(INTEGRATIONS)}, not {unknown[0]!r}", field="libraries"
        )
    for name in wanted:
        undo = _enabled.pop(name, None)
        if undo is not None:
            undo()
        if disable or importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(f"{__name__}.{INTEGRATIONS[name]}")
        _enabled[name] = module.enable(AutologConfig(experiment=experiment, log_models=log_models))
    return sorted(_enabled)
