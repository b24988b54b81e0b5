"""Experiment runs over the wire: start (with what the client captured), log params, tags
and metric batches, end, and read them back. Logging needs the ``log`` permission."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Query
from fastapi.responses import Response
from pydantic import Field

from ..service import possession
from ..tracking.records import MetricPoint, Run, RunArtifact, RunComparison, Snapshot
from .auth import Caller, caller
from .bodies import Body, Number, ok
from .routing import documented_router

router = documented_router("/api/v1/projects/{project}/runs")
Who = Annotated[Caller, Depends(caller)]
_RECORD_KEYS = ("code", "environment", "command", "host", "seed", "blobs")


class StartBody(Body):
    experiment: str = "default"
    name: str | None = None
    parent: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    record: dict[str, Any] = Field(
        default_factory=dict, description="what the client captured: code, environment, ..."
    )


class ParamsBody(Body):
    params: dict[str, Any]


class TagsBody(Body):
    tags: dict[str, Any]


class MetricsBody(Body):
    points: list[tuple[str, float, int, int]] = Field(
        max_length=100_000, description="(key, value, step, unix time in µs)"
    )


class EndBody(Body):
    status: Literal["finished", "failed", "killed"] = "finished"
    failure: str | None = None


@router.post("", status_code=201, responses={201: {"model": Run}})
def start(project: str, body: StartBody, who: Who) -> Response:
    reg = who.need(project, "log")
    record = {k: body.record.get(k) for k in _RECORD_KEYS}
    run = reg._begin_run(
        experiment=body.experiment,
        project=project,
        record=record,
        name=body.name,
        parent_id=body.parent,
        tags=body.tags,
    )
    return ok(run, status=201)


@router.get("", responses={200: {"model": list[Run]}})
def listing(
    project: str,
    who: Who,
    experiment: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    reg = who.read(project)
    return ok(reg.runs(experiment=experiment, status=status, limit=limit, project=project))


@router.get("/compare", responses={200: {"model": RunComparison}})
def compare(project: str, who: Who, run: Annotated[list[str], Query(max_length=1000)]) -> Response:
    """Runs side by side: every param and metric key, its value in each run."""
    return ok(who.read(project).compare_runs(run, project=project))


@router.get("/{run_id}", responses={200: {"model": Run}})
def get(project: str, run_id: str, who: Who) -> Response:
    return ok(who.read(project).get_run(run_id, project=project))


@router.post("/{run_id}/params")
def params(project: str, run_id: str, body: ParamsBody, who: Who) -> Response:
    return ok(who.need(project, "log").log_params(run_id, body.params, project=project))


@router.post("/{run_id}/tags", status_code=204)
def tags(project: str, run_id: str, body: TagsBody, who: Who) -> Response:
    who.need(project, "log").set_run_tags(run_id, body.tags, project=project)
    return Response(status_code=204)


@router.post("/{run_id}/metrics")
def metrics(project: str, run_id: str, body: MetricsBody, who: Who) -> Response:
    """Store a batch of metric points in one transaction."""
    reg = who.need(project, "log")
    return ok({"stored": reg.log_metric_points(run_id, body.points, project=project)})


@router.get("/{run_id}/metrics/{key}", responses={200: {"model": list[MetricPoint]}})
def history(project: str, run_id: str, key: str, who: Who) -> Response:
    return ok(who.read(project).metric_history(run_id, key, project=project))


class ArtifactFile(Body):
    path: str
    digest: str
    size: Number


class ArtifactsBody(Body):
    files: list[ArtifactFile] = Field(max_length=100_000, description="uploaded first")


@router.post("/{run_id}/artifacts", status_code=201, responses={201: {"model": list[RunArtifact]}})
def log_artifacts(project: str, run_id: str, body: ArtifactsBody, who: Who) -> Response:
    """List files the client uploaded under the run (write-once paths)."""
    from ..blobs.base import checked_digest
    from ..service.runs import record_uploaded_artifacts

    reg = who.need(project, "log")
    entries = [RunArtifact(f.path, checked_digest(f.digest), f.size) for f in body.files]
    # a digest alone is no key to another project's files (docs/server.md, tenants)
    found = record_uploaded_artifacts(
        reg._ctx,
        run_id,
        project,
        entries,
        unproven=lambda digests: possession.unproven(reg._ctx, who.user, digests, who.readable()),
    )
    return ok(found, status=201)


class DatasetBody(Body):
    snapshot: str = Field(description="a snapshot reference (NAME@DIGEST)")
    role: str = "train"


@router.post("/{run_id}/datasets", responses={200: {"model": Snapshot}})
def use_dataset(project: str, run_id: str, body: DatasetBody, who: Who) -> Response:
    """Record that the run read a dataset snapshot (never a path on the server)."""
    reg = who.need(project, "log")
    snap = reg.get_snapshot(body.snapshot, project=project)
    return ok(reg.use_dataset(run_id, snap, role=body.role, project=project))


@router.post("/{run_id}/end", responses={200: {"model": Run}})
def end(project: str, run_id: str, body: EndBody, who: Who) -> Response:
    reg = who.need(project, "log")
    return ok(reg.end_run(run_id, body.status, failure=body.failure, project=project))
