"""The remote registry's evaluations, gates, lineage, dataset snapshots and run artifacts
through the server (files are hashed here and only the ones the server lacks are sent)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..domain import (
    as_json,
)
from ..errors import InvalidInput
from ..tracking.records import (
    BehaviourComparison,
    EvaluationReport,
    GateReport,
    Lineage,
    RunArtifact,
    RunComparison,
    Snapshot,
    SnapshotDiff,
)
from ..wire import from_json
from .base import RemoteBase, seg
from .blobs import file_digest


class RemoteEvaluations(RemoteBase):
    """Evaluation, snapshot and artifact methods of :class:`~modelvault.remote.RemoteRegistry`."""

    # -- evaluations, gates, lineage, snapshots ---------------------------------------------
    def _set_ref(self, eval_set: Snapshot | str | Path, ref: str) -> str:
        """The evaluation set as a snapshot reference (a local path is snapshotted, its
        files stored on the server, as locally)."""
        if isinstance(eval_set, str) and not eval_set.strip():
            raise InvalidInput("the evaluation set is empty", field="eval_set")
        project, _ = self._split(ref)
        snap = self._as_snapshot(eval_set, name=None, project=project, store=True)
        return f"{snap.name}@{snap.digest}"

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
        latency: Any = latency_ms
        if latency_ms is not None:
            latency = dict(latency_ms) if isinstance(latency_ms, Mapping) else list(latency_ms)
        data = self._http.call(
            "POST",
            self._ref_path(ref, "evaluations"),
            json={
                "eval_set": self._set_ref(eval_set, ref),
                "metrics": dict(metrics),
                "latency_ms": latency,
                "cost_per_request": cost_per_request,
                "outputs": as_json(list(outputs)) if outputs is not None else None,
                "label_column": label_column,
            },
        )
        return from_json(EvaluationReport, data)

    def evaluations(self, ref: str) -> list[EvaluationReport]:
        data = self._http.call("GET", self._ref_path(ref, "evaluations"))
        return [from_json(EvaluationReport, r) for r in data]

    def evaluate(self, ref: str, eval_set: Snapshot | str | Path, **_: Any) -> EvaluationReport:
        self._unsupported(
            "running an evaluation (measure where the model runs, then record_evaluation)"
        )

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
        """From both versions' reports on the set that hold outputs (the server runs no
        models: record them first)."""
        pa, ra = self._split(a)
        pb, rb = self._split(b)
        if pa != pb:
            self._unsupported("comparing versions of two projects")
        data = self._http.call(
            "GET",
            f"/projects/{seg(pa)}/compare",
            params={"a": ra, "b": rb, "eval_set": self._set_ref(eval_set, a), "top": top},
        )
        return from_json(BehaviourComparison, data)

    def check_gate(self, ref: str, to: str = "production") -> GateReport:
        data = self._http.call("GET", self._ref_path(ref, "gate"), params={"to": to})
        return from_json(GateReport, data)

    def lineage(self, ref: str) -> Lineage:
        return from_json(Lineage, self._http.call("GET", self._ref_path(ref, "lineage")))

    def openlineage(self, ref: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._http.call("GET", self._ref_path(ref, "openlineage"))
        return result

    def compare_runs(self, run_ids: Iterable[str], *, project: str | None = None) -> RunComparison:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/runs/compare", params={"run": list(run_ids)}
        )
        return from_json(RunComparison, data)

    def get_snapshot(self, ref: str, *, project: str | None = None) -> Snapshot:
        data = self._http.call("GET", f"/projects/{self._p(project)}/snapshots/{seg(ref)}")
        return from_json(Snapshot, data)

    def snapshots(self, *, name: str | None = None, project: str | None = None) -> list[Snapshot]:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/snapshots", params={"name": name}
        )
        return [from_json(Snapshot, s) for s in data]

    def diff_snapshots(self, a: str, b: str, *, project: str | None = None) -> SnapshotDiff:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/snapshot-diff", params={"a": a, "b": b}
        )
        return from_json(SnapshotDiff, data)

    # -- making snapshots, datasets of runs -------------------------------------------------
    def snapshot(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        store: bool = False,
        project: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Snapshot:
        """Hash the files here; with ``store=True`` upload those the server lacks; then send
        the manifest."""
        from ..filecache import HashCache
        from ..limits import check_key
        from ..manifest import manifest_bytes
        from ..treehash import hash_tree

        root = Path(path)
        name = check_key(name or root.absolute().name, what="dataset")
        cache = HashCache(self.settings.home / "cache" / "file-digests.db")
        entries = hash_tree(root, cache=cache, progress=progress)
        if store:
            wanted = list(dict.fromkeys(e.digest for e in entries))
            lacking = set(self._blobs.missing(wanted)) if wanted else set()
            for entry in entries:
                if entry.digest not in lacking:
                    continue
                source = root if not root.is_dir() else root.joinpath(*entry.path.split("/"))
                self._blobs.upload(source, entry.digest, entry.size, None)
                lacking.discard(entry.digest)
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/snapshots",
            json={
                "name": name,
                "manifest_text": manifest_bytes(entries).decode("utf-8"),
                "uri": str(root.resolve()),
                "stored": store,
            },
        )
        return from_json(Snapshot, data)

    def snapshot_external(
        self, uri: str, *, name: str | None = None, project: str | None = None
    ) -> Snapshot:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/snapshots",
            json={"external": uri, "name": name},
        )
        return from_json(Snapshot, data)

    def use_dataset(
        self,
        run_id: str,
        dataset: Snapshot | str | Path,
        *,
        role: str = "train",
        name: str | None = None,
        project: str | None = None,
    ) -> Snapshot:
        snap = self._as_snapshot(dataset, name=name, project=project, store=False)
        self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{seg(run_id)}/datasets",
            json={"snapshot": f"{snap.name}@{snap.digest}", "role": role},
        )
        return snap

    def log_artifact(
        self,
        run_id: str,
        path: str | Path,
        *,
        artifact_path: str | None = None,
        project: str | None = None,
    ) -> list[RunArtifact]:
        """Hash the files here, upload those the server lacks, then list them under the run."""
        from ..manifest import scan
        from ..service.runs import artifact_name, artifact_prefix

        root = Path(path)
        prefix = artifact_prefix(root, artifact_path)
        files = []
        for item in scan(root):
            digest = file_digest(item.source)
            files.append(
                (item, RunArtifact(artifact_name(root, prefix, item.path), digest, item.size))
            )
        wanted = list(dict.fromkeys(a.digest for _, a in files))
        lacking = set(self._blobs.missing(wanted)) if wanted else set()
        for item, art in files:
            if art.digest in lacking:
                self._blobs.upload(item.source, art.digest, art.size, None)
                lacking.discard(art.digest)
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/runs/{seg(run_id)}/artifacts",
            json={"files": [as_json(a) for _, a in files]},
        )
        return [from_json(RunArtifact, a) for a in data]
