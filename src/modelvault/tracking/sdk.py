"""The tracking half of ``Registry``: runs, snapshots, evaluations, gates, lineage and model
loading. A mixin so ``registry.py`` stays small; every method is a thin call into the service
layer, like the rest of ``Registry``."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain import as_json
from ..errors import Conflict, InvalidInput, NotFound
from .records import (
    BehaviourComparison,
    EvaluationReport,
    GateReport,
    Lineage,
    MetricPoint,
    Run,
    RunArtifact,
    RunComparison,
    Snapshot,
    SnapshotDiff,
)

if TYPE_CHECKING:
    from ..blobs import BlobStore
    from ..flavors import LoadedModel
    from ..service.context import Context
    from ..settings import Settings
    from .active import ActiveRun

Predict = Callable[[Sequence[Sequence[Any]]], Sequence[Any]]


class TrackingMethods:
    _ctx: Context
    settings: Settings

    def _project(self, project: str | None) -> str:
        from ..limits import check_name

        return check_name(project or self.settings.project, what="project name")

    # -- runs -------------------------------------------------------------------------------
    def start_run(
        self,
        experiment: str = "default",
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent: str | None = None,
        nested: bool = False,
        project: str | None = None,
        capture_code: bool = True,
        capture_environment: bool = True,
        code_dir: str | Path | None = None,
        system_metrics: float | None = None,
        flush_interval: float = 0.5,
    ) -> ActiveRun:
        """Start a run; use it as a context manager. Code (git), command line, environment,
        host and seed are captured now. ``nested=True`` makes it a child of the active run."""
        from ..capture import capture
        from ..capture.seeds import last_seed
        from .active import ActiveRun, active_run

        current = active_run()
        if parent is None and current is not None:
            if not nested:
                raise Conflict(
                    f"run {current.id} is active; end it first or pass nested=True", run=current.id
                )
            parent = current.id
        if system_metrics is not None and not 0.1 <= system_metrics <= 3600:
            raise InvalidInput("system_metrics is an interval from 0.1 to 3600 seconds")
        seed = last_seed()
        store = self._run_blobs()
        code, env, blobs = capture(
            store,
            code_dir=Path(code_dir) if code_dir is not None else None,
            seed=seed,
            code=capture_code,
            environment=capture_environment,
        )
        store.sync()
        record = {
            "code": asdict(code) if code else None,
            "environment": as_json(env) if env else None,
            "command": [str(a) for a in sys.argv][:200],
            "host": {
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "cwd": os.getcwd(),
                "platform": platform.platform(),
            },
            "seed": seed,
            "blobs": blobs,
        }
        run_tags = dict(tags or {})
        if seed is not None:
            run_tags.setdefault("modelvault.seed", str(seed))
        stored = self._begin_run(
            experiment=experiment,
            project=self._project(project),
            record=record,
            name=name,
            parent_id=parent,
            tags=run_tags,
        )
        return ActiveRun(
            self,  # type: ignore[arg-type]
            stored,
            system_metrics=system_metrics,
            flush_interval=flush_interval,
        )

    def _run_blobs(self) -> BlobStore:
        """Where a run's captured code diff and package list go."""
        return self._ctx.blobs

    def _begin_run(
        self,
        *,
        experiment: str,
        project: str,
        record: Mapping[str, Any],
        name: str | None,
        parent_id: str | None,
        tags: Mapping[str, str],
    ) -> Run:
        from ..service.runs import start_run

        return start_run(
            self._ctx,
            experiment=experiment,
            project=project,
            record=record,
            name=name,
            parent_id=parent_id,
            tags=tags,
        )

    def get_run(self, run_id: str, *, project: str | None = None) -> Run:
        from ..service.runs import get_run

        return get_run(self._ctx, run_id, self._project(project))

    def runs(
        self,
        *,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 100,
        project: str | None = None,
    ) -> list[Run]:
        from ..service.runs import list_runs

        return list_runs(
            self._ctx, self._project(project), experiment=experiment, status=status, limit=limit
        )

    def compare_runs(self, run_ids: Iterable[str], *, project: str | None = None) -> RunComparison:
        from ..service.runs import compare_runs

        return compare_runs(self._ctx, list(run_ids), self._project(project))

    def metric_history(
        self, run_id: str, key: str, *, project: str | None = None
    ) -> list[MetricPoint]:
        from ..service.runs import metric_history

        return metric_history(self._ctx, run_id, key, self._project(project))

    def log_params(
        self, run_id: str, params: Mapping[str, Any], *, project: str | None = None
    ) -> dict[str, Any]:
        from ..service.runs import log_params

        return log_params(self._ctx, run_id, params, self._project(project))

    def set_run_tags(
        self, run_id: str, tags: Mapping[str, str], *, project: str | None = None
    ) -> None:
        from ..service.runs import set_tags

        set_tags(self._ctx, run_id, tags, self._project(project))

    def log_metric_points(
        self,
        run_id: str,
        points: Sequence[tuple[str, float, int, int]],
        *,
        project: str | None = None,
    ) -> int:
        """Store (key, value, step, unix time in µs) points now, in one transaction."""
        from ..service.runs import log_metrics

        return log_metrics(self._ctx, run_id, points, self._project(project))

    def end_run(
        self,
        run_id: str,
        status: str = "finished",
        *,
        failure: str | None = None,
        project: str | None = None,
    ) -> Run:
        from ..service.runs import end_run

        return end_run(self._ctx, run_id, status, self._project(project), failure)

    def log_artifact(
        self,
        run_id: str,
        path: str | Path,
        *,
        artifact_path: str | None = None,
        project: str | None = None,
    ) -> list[RunArtifact]:
        from ..service.runs import log_artifact

        return log_artifact(self._ctx, run_id, Path(path), self._project(project), artifact_path)

    def use_dataset(
        self,
        run_id: str,
        dataset: Snapshot | str | Path,
        *,
        role: str = "train",
        name: str | None = None,
        project: str | None = None,
    ) -> Snapshot:
        from ..service.runs import use_dataset
        from ..service.snapshots import snapshot_row

        snap = self._as_snapshot(dataset, name=name, project=project, store=False)
        proj = self._project(project)
        with self._ctx.store.read() as conn:
            row = snapshot_row(conn, f"{snap.name}@{snap.digest}", proj)
        use_dataset(self._ctx, run_id, row.id, role, proj)
        return snap

    # -- dataset snapshots ------------------------------------------------------------------
    def snapshot(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        store: bool = False,
        project: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Snapshot:
        """Snapshot a file or directory: its manifest (path, size, sha256 of every file) is
        stored and named by its digest; with ``store=True`` the files are copied too."""
        from ..service.snapshots import snapshot_path

        return snapshot_path(
            self._ctx,
            Path(path),
            self._project(project),
            name=name,
            store_data=store,
            progress=progress,
        )

    def snapshot_external(
        self, uri: str, *, name: str | None = None, project: str | None = None
    ) -> Snapshot:
        """Record a pinned external dataset (s3://…?versionId=, lakefs://, delta://…@N,
        hf://datasets/…@REV, dvc://FILE.dvc)."""
        from ..service.snapshots import snapshot_external

        return snapshot_external(self._ctx, uri, self._project(project), name)

    def get_snapshot(self, ref: str, *, project: str | None = None) -> Snapshot:
        from ..service.snapshots import get_snapshot

        return get_snapshot(self._ctx, ref, self._project(project))

    def snapshots(self, *, name: str | None = None, project: str | None = None) -> list[Snapshot]:
        from ..service.snapshots import list_snapshots

        return list_snapshots(self._ctx, self._project(project), name)

    def diff_snapshots(self, a: str, b: str, *, project: str | None = None) -> SnapshotDiff:
        from ..service.snapshots import diff_snapshots

        return diff_snapshots(self._ctx, a, b, self._project(project))

    def _as_snapshot(
        self, dataset: Snapshot | str | Path, *, name: str | None, project: str | None, store: bool
    ) -> Snapshot:
        if isinstance(dataset, Snapshot):
            return dataset
        if isinstance(dataset, Path):
            return self.snapshot(dataset, name=name, store=store, project=project)
        if isinstance(dataset, str) and "://" in dataset:
            return self.snapshot_external(dataset, name=name, project=project)
        try:
            return self.get_snapshot(str(dataset), project=project)
        except (NotFound, InvalidInput):
            if isinstance(dataset, str) and os.path.exists(dataset):
                return self.snapshot(dataset, name=name, store=store, project=project)
            raise

    # -- evaluations ------------------------------------------------------------------------
    def record_evaluation(
        self,
        ref: str,
        eval_set: Snapshot | str,
        *,
        metrics: Mapping[str, float],
        latency_ms: Mapping[str, float] | Sequence[float] | None = None,
        cost_per_request: float | None = None,
        outputs: Sequence[Any] | None = None,
        label_column: str = "label",
    ) -> EvaluationReport:
        """Attach an immutable report with metric values measured elsewhere. With *outputs*
        (one per example) the per-example outputs are kept beside the set's labels."""
        from ..service.evaluations import outputs_blob, record_report

        snap = self._as_snapshot(eval_set, name=None, project=None, store=True)
        blob = None
        examples = None
        if outputs is not None:
            labels = self._examples(snap, label_column).labels
            blob = outputs_blob(labels, list(outputs))
            examples = len(labels)
        return record_report(
            self._ctx,
            ref,
            f"{snap.name}@{snap.digest}",
            snap.project,
            metrics=metrics,
            latency_ms=latency_ms,
            cost_per_request=cost_per_request,
            examples=examples,
            outputs=blob,
        )

    def _examples(self, snap: Snapshot, label_column: str) -> Any:
        from ..evaluation import load_examples
        from ..service.snapshots import materialize

        root = materialize(self._ctx, snap)
        try:
            return load_examples(root, label_column)
        finally:
            if snap.stored:
                shutil.rmtree(root, ignore_errors=True)

    def evaluate(
        self,
        ref: str,
        eval_set: Snapshot | str | Path,
        *,
        predict_fn: Predict | None = None,
        outputs: Sequence[Any] | None = None,
        metrics: Sequence[str]
        | Mapping[str, Callable[[Sequence[Any], Sequence[Any]], float]]
        | None = None,
        label_column: str = "label",
        batch_size: int = 1,
        cost_per_request: float | None = None,
        trusted: bool = False,
    ) -> EvaluationReport:
        """Evaluate *ref* on *eval_set* and record the report. Outputs come from *outputs*,
        from *predict_fn* called on batches of *batch_size* examples (each call is one
        request whose latency is measured), or, with neither, from the version's own model
        loaded through its flavor."""
        from ..evaluation import compute, default_metrics, plain
        from ..service.evaluations import outputs_blob, record_report

        if outputs is not None and predict_fn is not None:
            raise InvalidInput("give outputs or predict_fn, not both")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput("batch_size must be a whole number >= 1", field="batch_size")
        snap = self._as_snapshot(eval_set, name=None, project=None, store=True)
        examples = self._examples(snap, label_column)
        latencies: list[float] = []
        if outputs is None:
            predict = predict_fn or self.load_model(ref, trusted=trusted).predict
            produced: list[Any] = []
            for i in range(0, len(examples.inputs), batch_size):
                batch = examples.inputs[i : i + batch_size]
                t0 = time.perf_counter()
                result = predict(batch)
                latencies.append((time.perf_counter() - t0) * 1000)
                produced.extend(plain(result))
            outputs = produced
        outputs = [plain(o) for o in outputs]
        values = compute(metrics or default_metrics(examples.labels), examples.labels, outputs)
        return record_report(
            self._ctx,
            ref,
            f"{snap.name}@{snap.digest}",
            snap.project,
            metrics=values,
            latency_ms=latencies,
            cost_per_request=cost_per_request,
            examples=len(examples.labels),
            outputs=outputs_blob(examples.labels, outputs),
        )

    def evaluations(self, ref: str) -> list[EvaluationReport]:
        from ..service.evaluations import list_reports

        return list_reports(self._ctx, ref)

    def compare(
        self,
        a: str,
        b: str,
        *,
        eval_set: Snapshot | str | Path,
        label_column: str = "label",
        top: int = 10,
        trusted: bool = False,
    ) -> BehaviourComparison:
        """Both versions on the same evaluation set: their reports on it when they have one
        with outputs, else they are run (and the new reports recorded)."""
        from ..service.evaluations import compare_outputs, report_outputs

        snap = self._as_snapshot(eval_set, name=None, project=None, store=True)
        sides = []
        for ref in (a, b):
            report = next(
                (
                    r
                    for r in reversed(self.evaluations(ref))
                    if r.eval_set == snap.digest and r.outputs_digest
                ),
                None,
            )
            if report is None:
                report = self.evaluate(ref, snap, label_column=label_column, trusted=trusted)
            sides.append((report, report_outputs(self._ctx, report) or []))
        (ra, oa), (rb, ob) = sides
        return compare_outputs(ra.version, rb.version, snap, ra, rb, oa, ob, top=top)

    # -- gates, lineage, loading ------------------------------------------------------------
    def check_gate(self, ref: str, to: str = "production") -> GateReport:
        """The gate a promotion of *ref* to *to* would face, rule by rule (nothing changes)."""
        from ..service.gating import check_gate

        return check_gate(self._ctx, ref, to)

    def lineage(self, ref: str) -> Lineage:
        from ..service.lineage import lineage

        return lineage(self._ctx, ref)

    def openlineage(self, ref: str) -> list[dict[str, Any]]:
        """The version's lineage as OpenLineage run events (needs openlineage-python)."""
        try:
            from ..service.lineage import openlineage_events

            return openlineage_events(self._ctx, ref)
        except ModuleNotFoundError as exc:
            if "openlineage" not in str(exc):
                raise
            raise InvalidInput(
                "OpenLineage output needs the openlineage-python package: "
                "pip install 'modelvault[lineage]'"
            ) from None

    def load_model(
        self, ref: str, *, feature_pipeline: str | None = None, trusted: bool = False
    ) -> LoadedModel:
        """Materialize the version's files (every digest verified) and load them through its
        flavor. With *feature_pipeline*, refuse a version trained on another pipeline."""
        from ..flavors import load
        from ..service.artifacts import pull
        from ..service.versions import get

        version = get(self._ctx, ref)
        if feature_pipeline is not None:
            given = self._pin(feature_pipeline)
            declared = version.feature_pipeline
            if declared is None or self._pin(declared) != given:
                raise Conflict(
                    f"{version} was trained with feature pipeline {declared or '(none declared)'}"
                    f", not {given}; build its inputs with that pipeline or use a version "
                    f"trained on {given}",
                    model=version.model,
                    version=version.number,
                    feature_pipeline=declared,
                )
        dest = Path(tempfile.mkdtemp(prefix="mv-load-"))
        try:
            pull(self._ctx, version.artifact_digest, str(version), dest, overwrite=True)
            return load(dest, version.flavor, trusted=trusted)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def _pin(self, reference: str) -> str:
        """A version reference made exact (PROJECT/MODEL:N); free text stays as it is."""
        from ..service.versions import get

        try:
            return get(self._ctx, reference).ref
        except (NotFound, InvalidInput):
            return reference
