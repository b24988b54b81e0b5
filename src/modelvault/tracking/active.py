"""The live handle of a run (``with modelvault.start_run(...) as run``) and the stack of
active runs.

Params, tags, artifacts and inputs are written at once (a write-once param conflict must
reach the caller); metric points go through a ``MetricBuffer``. A run left open ends when
the interpreter exits (``failed`` after an uncaught exception, else ``finished``) or on
SIGTERM (``killed``); leaving the ``with`` block by an exception marks it ``failed`` with the
exception type, by Ctrl-C ``killed``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidInput
from ..limits import check_key
from ..service.runs import metric_value
from .buffer import MetricBuffer
from .records import Run, Snapshot

if TYPE_CHECKING:
    from ..domain import Version
    from ..registry import Registry

_stack: list[ActiveRun] = []
_lock = threading.Lock()
_hooks: list[bool] = []  # one entry once the exit, excepthook and SIGTERM hooks are in
_uncaught: list[str] = []


def active_run() -> ActiveRun | None:
    with _lock:
        return _stack[-1] if _stack else None


class ActiveRun:
    """A running run. Use it as a context manager, or call ``end()``."""

    def __init__(
        self,
        registry: Registry,
        run: Run,
        *,
        system_metrics: float | None = None,
        flush_interval: float = 0.5,
    ) -> None:
        self.registry = registry
        self.id = run.id
        self.project = run.project
        self.experiment = run.experiment
        self._ended = False
        self._steps: dict[str, itertools.count[int]] = {}
        self._keys: set[str] = set()
        self._buffer = MetricBuffer(
            lambda points: registry.log_metric_points(self.id, points, project=self.project),
            interval=flush_interval,
        )
        self._sampler = None
        if system_metrics:
            from ..capture.sampler import SystemSampler

            self._sampler = SystemSampler(
                lambda values, step: self.log_metrics(values, step=step), system_metrics
            )
        with _lock:
            _stack.append(self)
        _install_hooks()

    # -- logging ----------------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Write-once: logging a key again with another value raises Conflict."""
        self.registry.log_params(self.id, params, project=self.project)

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.registry.set_run_tags(self.id, tags, project=self.project)

    def _point(self, key: str, value: Any, step: int | None) -> tuple[str, float, int, int]:
        # the hot path of a training loop: a key is checked once, a float passes straight on
        if key not in self._keys:
            check_key(key, what="metric")
            self._keys.add(key)
        if type(value) is not float:
            value = metric_value(key, value)
        if step is None:
            step = next(self._steps.setdefault(key, itertools.count()))
        elif type(step) is not int or not 0 <= step < 2**62:
            raise InvalidInput(f"metric {key!r}: step must be a whole number >= 0", field="step")
        return key, value, step, time.time_ns() // 1000

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Add one point; without *step*, each key counts its own steps from 0."""
        self._check_open()
        self._buffer.add(self._point(key, value, step))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._check_open()
        for key, value in metrics.items():
            self._buffer.add(self._point(key, value, step))

    def log_batch(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Add many (key, value, step) points at once."""
        self._check_open()
        self._buffer.extend([self._point(k, v, s) for k, v, s in points])

    def flush(self) -> None:
        """Wait until every metric point logged so far is stored."""
        self._buffer.flush()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._check_open()
        self.registry.log_artifact(self.id, path, artifact_path=artifact_path, project=self.project)

    def use_dataset(
        self, dataset: Snapshot | str | Path, role: str = "train", *, name: str | None = None
    ) -> Snapshot:
        """Record an input: a Snapshot, a snapshot reference, a local path (snapshotted now)
        or a pinned external URI."""
        self._check_open()
        return self.registry.use_dataset(
            self.id, dataset, role=role, name=name, project=self.project
        )

    def register_model(self, model: str, path: str | Path | None = None, **kwargs: Any) -> Version:
        """Register a version from this run: its params, final metrics, datasets, code,
        environment and a link back to the run. Without *path*, the model the run logged
        under ``model/`` (e.g. by autolog) is registered."""
        self.flush()
        return self.registry.register(model, path, run=self.id, project=self.project, **kwargs)

    def start_run(self, **kwargs: Any) -> ActiveRun:
        """A nested run whose parent is this one."""
        return self.registry.start_run(parent=self.id, project=self.project, **kwargs)

    def info(self) -> Run:
        self.flush()
        return self.registry.get_run(self.id, project=self.project)

    # -- ending -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._ended:
            raise Conflict(f"run {self.id} has ended", run=self.id)

    def end(self, status: str = "finished", failure: str | None = None) -> Run:
        if self._ended:
            return self.registry.get_run(self.id, project=self.project)
        self._ended = True
        with _lock:
            if self in _stack:
                _stack.remove(self)
        if self._sampler is not None:
            self._sampler.stop()
        try:
            self._buffer.close()
        except BaseException as exc:
            self.registry.end_run(
                self.id, "failed", failure=f"metrics not stored: {exc}", project=self.project
            )
            raise
        return self.registry.end_run(self.id, status, failure=failure, project=self.project)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("killed", failure="KeyboardInterrupt")
        else:
            self.end("failed", failure=f"{exc_type.__name__}: {exc}"[:2000])


def _end_all(status: str, failure: str | None) -> None:
    with _lock:
        open_runs = list(reversed(_stack))
    for run in open_runs:
        try:
            run.end(status, failure=failure)
        except Exception as exc:  # at exit there is nobody left to raise to
            print(f"modelvault: could not end run {run.id}: {exc}", file=sys.stderr)


def _at_exit() -> None:
    if _uncaught:
        _end_all("failed", _uncaught[-1])
    else:
        _end_all("finished", None)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _end_all("killed", "SIGTERM")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_hooks() -> None:
    if _hooks:
        return
    _hooks.append(True)
    atexit.register(_at_exit)
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        _uncaught.append(f"{kind.__name__}: {value}"[:2000])
        previous(kind, value, tb)

    sys.excepthook = hook
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)
