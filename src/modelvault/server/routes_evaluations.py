"""Evaluations, gates, lineage and dataset snapshots over the wire.

Reading needs ``read``; recording an evaluation report (metrics measured on the client, and
optionally its per-example outputs) needs ``log``. The server never runs a model: comparing
two versions uses reports that already hold outputs. Lineage leaves out versions of projects
the caller may not read (and everything below them), so it cannot reveal another tenant.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi.responses import Response
from pydantic import Field

from ..errors import InvalidInput
from ..refs import parse_ref
from ..service import possession
from ..tracking.records import (
    BehaviourComparison,
    EvaluationReport,
    GateReport,
    Lineage,
    LineageNode,
    Snapshot,
    SnapshotDiff,
)
from .auth import Caller, caller
from .bodies import Body, ok
from .routes_registry import _ref
from .routing import documented_router

router = documented_router("/api/v1/projects/{project}")
Who = Annotated[Caller, Depends(caller)]


class EvaluationBody(Body):
    eval_set: str = Field(description="the evaluation set: a snapshot reference (NAME@DIGEST)")
    metrics: dict[str, float]
    latency_ms: dict[str, float] | list[float] | None = None
    cost_per_request: float | None = None
    outputs: list[Any] | None = Field(
        None, description="one output per example, kept beside the set's labels"
    )
    label_column: str = "label"


@router.get("/refs/{ref}/evaluations", responses={200: {"model": list[EvaluationReport]}})
def evaluations(project: str, ref: str, who: Who) -> Response:
    return ok(who.read(project).evaluations(_ref(project, ref)))


@router.post(
    "/refs/{ref}/evaluations", status_code=201, responses={201: {"model": EvaluationReport}}
)
def record_evaluation(project: str, ref: str, body: EvaluationBody, who: Who) -> Response:
    """Attach an immutable report with metric values measured elsewhere."""
    reg = who.need(project, "log")
    snap = reg.get_snapshot(body.eval_set, project=project)  # never a path on the server
    report = reg.record_evaluation(
        _ref(project, ref),
        snap,
        metrics=body.metrics,
        latency_ms=body.latency_ms,
        cost_per_request=body.cost_per_request,
        outputs=body.outputs,
        label_column=body.label_column,
    )
    return ok(report, status=201)


@router.get("/compare", responses={200: {"model": BehaviourComparison}})
def compare(
    project: str,
    a: str,
    b: str,
    eval_set: str,
    who: Who,
    top: Annotated[int, Query(ge=0, le=10_000)] = 10,
) -> Response:
    """Two versions on one evaluation set, from their reports on it that hold outputs."""
    from ..service.evaluations import compare_outputs, report_outputs

    reg = who.read(project)
    snap = reg.get_snapshot(eval_set, project=project)
    sides = []
    for ref in (a, b):
        full = _ref(project, ref)
        report = next(
            (
                r
                for r in reversed(reg.evaluations(full))
                if r.eval_set == snap.digest and r.outputs_digest
            ),
            None,
        )
        if report is None:
            raise InvalidInput(
                f"{ref} has no report with outputs on {snap.ref}: evaluate it where the model "
                "runs (the server runs no models)",
                field="ref",
            )
        sides.append((report, report_outputs(reg._ctx, report) or []))
    (ra, oa), (rb, ob) = sides
    return ok(compare_outputs(ra.version, rb.version, snap, ra, rb, oa, ob, top=top))


@router.get("/refs/{ref}/gate", responses={200: {"model": GateReport}})
def check_gate(project: str, ref: str, who: Who, to: str = "production") -> Response:
    """The gate a promotion would face, rule by rule (nothing changes)."""
    return ok(who.read(project).check_gate(_ref(project, ref), to))


def _project_of(node: LineageNode) -> str | None:
    if node.kind not in ("version", "config", "feature_pipeline") or "/" not in node.id:
        return None
    try:
        return parse_ref(node.id).project
    except InvalidInput:
        return None


def _visible(who: Caller, nodes: tuple[LineageNode, ...]) -> tuple[LineageNode, ...]:
    kept = []
    for node in nodes:
        other = _project_of(node)
        if other is not None and not who.principal.can(other, "read"):
            continue
        kept.append(LineageNode(node.kind, node.id, node.facts, _visible(who, node.children)))
    return tuple(kept)


@router.get("/refs/{ref}/lineage", responses={200: {"model": Lineage}})
def lineage(project: str, ref: str, who: Who) -> Response:
    """Upstream and downstream of a version, within the projects the caller may read."""
    found = who.read(project).lineage(_ref(project, ref))
    return ok(Lineage(found.root, _visible(who, found.upstream), _visible(who, found.downstream)))


class SnapshotBody(Body):
    """A snapshot hashed on the client (its manifest; files uploaded first when ``stored``),
    or a pinned external reference."""

    name: str | None = None
    manifest_text: str | None = Field(None, description="the manifest (canonical JSON)")
    uri: str | None = Field(None, description="where the client read the files (a note)")
    stored: bool = False
    external: str | None = Field(None, description="a pinned URI: s3://…?versionId=, …")


@router.post("/snapshots", status_code=201, responses={201: {"model": Snapshot}})
def snapshot(project: str, body: SnapshotBody, who: Who) -> Response:
    """Record a dataset snapshot: never of a path on the server."""
    from ..service.snapshots import record_uploaded

    reg = who.need(project, "log")
    if (body.manifest_text is None) == (body.external is None):
        raise InvalidInput("give manifest_text or external, not both or neither", field="body")
    if body.external is not None:
        return ok(reg.snapshot_external(body.external, name=body.name, project=project), 201)
    if body.name is None:
        raise InvalidInput("a snapshot sent as a manifest needs a name", field="name")
    found = record_uploaded(
        reg._ctx,
        project,
        name=body.name,
        manifest_text=body.manifest_text or "",
        uri=body.uri,
        stored=body.stored,
        # a digest alone is no key to another project's files (docs/server.md, tenants)
        unproven=lambda digests: possession.unproven(reg._ctx, who.user, digests, who.readable()),
    )
    return ok(found, status=201)


@router.get("/refs/{ref}/openlineage")
def openlineage(project: str, ref: str, who: Who) -> Response:
    """The version's lineage as OpenLineage run events (its run, datasets and itself)."""
    return ok(who.read(project).openlineage(_ref(project, ref)))


@router.get("/snapshots", responses={200: {"model": list[Snapshot]}})
def snapshots(project: str, who: Who, name: str | None = None) -> Response:
    return ok(who.read(project).snapshots(name=name, project=project))


@router.get("/snapshot-diff", responses={200: {"model": SnapshotDiff}})
def diff_snapshots(project: str, a: str, b: str, who: Who) -> Response:
    """What changed between two snapshots, file by file."""
    return ok(who.read(project).diff_snapshots(a, b, project=project))


@router.get("/snapshots/{ref}", responses={200: {"model": Snapshot}})
def get_snapshot(project: str, ref: str, who: Who) -> Response:
    return ok(who.read(project).get_snapshot(ref, project=project))
