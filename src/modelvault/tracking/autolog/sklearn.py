"""scikit-learn autologging: every estimator's ``fit`` logs the estimator's params, the
training duration, its training score, and the fitted model saved with skops (never pickle)
under ``model/``.

The first autologged fit inside a run logs into that run; later fits in the same run, and
fits with no run active, get a run of their own (nested when a run is active), so params
stay write-once. Fits called from inside another fit (pipelines, searches) log nothing.
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import Conflict
from . import AutologConfig

MODEL_TAG = "modelvault.autolog.model"
_local = threading.local()


def _param(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        if isinstance(value, float) and math.isnan(value):  # NaN cannot be a param
            return "nan"
        if isinstance(value, str) and len(value) > 2000:
            return value[:2000]
        return value
    return repr(value)[:250]


def _log_fit(
    config: AutologConfig,
    estimator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fit: Callable[..., Any],
) -> Any:
    from ..active import active_run
    from ..api import default_registry

    outer = active_run()
    if outer is not None and MODEL_TAG not in outer.info().tags:
        run, own = outer, False
    elif outer is not None:
        run, own = outer.start_run(experiment=outer.experiment), True
    else:
        run, own = default_registry().start_run(experiment=config.experiment), True
    try:
        started = time.perf_counter()
        result = fit(estimator, *args, **kwargs)
        duration = time.perf_counter() - started
        params = {k: _param(v) for k, v in estimator.get_params(deep=False).items()}
        try:
            run.log_params(params)
        except Conflict:
            if own:
                raise
            # the user logged one of these keys with another value: keep both, apart
            run, own = outer.start_run(experiment=outer.experiment), True  # type: ignore[union-attr]
            run.log_params(params)
        metrics = {"training_duration_s": duration}
        X = args[0] if args else kwargs.get("X")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        if X is not None and y is not None and hasattr(estimator, "score"):
            # a score that cannot be computed is simply not logged
            with contextlib.suppress(Exception):
                metrics["training_score"] = float(estimator.score(X, y))
        run.log_metrics(metrics, step=0)
        tags = {"estimator_class": f"{type(estimator).__module__}.{type(estimator).__name__}"}
        if config.log_models:
            import skops.io

            with tempfile.TemporaryDirectory(prefix="mv-autolog-") as tmp:
                skops.io.dump(estimator, Path(tmp) / "model.skops")
                run.log_artifact(tmp, artifact_path="model")
            tags[MODEL_TAG] = "model/model.skops"
        run.set_tags(tags)
    except BaseException as exc:
        if own:
            run.end("failed", failure=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    if own:
        run.end("finished")
    return result


def _wrap(config: AutologConfig, fit: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fit)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return fit(self, *args, **kwargs)
        _local.depth = 1
        try:
            return _log_fit(config, self, args, kwargs, fit)
        finally:
            _local.depth = 0

    wrapper.__modelvault_original__ = fit  # type: ignore[attr-defined]
    return wrapper


def enable(config: AutologConfig) -> Callable[[], None]:
    from sklearn.utils import all_estimators

    patched: list[tuple[type, Callable[..., Any]]] = []
    seen: set[type] = set()
    for _, cls in all_estimators():
        owner = next((c for c in cls.__mro__ if "fit" in c.__dict__), None)
        if owner is None or owner in seen:
            continue
        seen.add(owner)
        original = owner.__dict__["fit"]
        if hasattr(original, "__modelvault_original__"):
            continue
        patched.append((owner, original))
        owner.fit = _wrap(config, original)

    def undo() -> None:
        for owner, original in patched:
            owner.fit = original  # type: ignore[attr-defined]

    return undo
