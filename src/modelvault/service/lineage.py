"""Lineage of a version: upstream (run, datasets, code, parent and component versions,
evaluation reports, feature pipeline) and downstream (versions derived from it or pinning
it), as trees; and the same facts as OpenLineage run events."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, select

from ..domain import Version
from ..store import schema
from ..tracking.records import Lineage, LineageNode
from .context import Context, base_version_select, version_row
from .evaluations import reports_of
from .records import version_from_row
from .runs import get_run

V, VP, VR = schema.versions, schema.version_parents, schema.version_runs
MAX_DEPTH = 8


def _version_node(v: Version, relation: str, children: tuple[LineageNode, ...]) -> LineageNode:
    return LineageNode(
        kind="version",
        id=f"{v.project}/{v.model}:{v.number}",
        facts={"relation": relation, "stage": v.stage, "digest": v.digest, "by": v.created_by},
        children=children,
    )


def _upstream(
    conn: Connection, ctx: Context, v: Version, version_id: int, depth: int
) -> tuple[LineageNode, ...]:
    nodes: list[LineageNode] = []
    if v.run_id is not None:
        run = get_run(ctx, v.run_id, v.project)
        nodes.append(
            LineageNode(
                "run",
                run.id,
                {
                    "experiment": run.experiment,
                    "status": run.status,
                    "started_at": run.started_at,
                    "by": run.created_by,
                },
            )
        )
    for d in v.datasets:
        nodes.append(
            LineageNode(
                "dataset",
                f"{d.name}@{d.digest}" if d.digest else str(d.uri),
                {"system": d.system, "uri": d.uri, "role": d.role},
            )
        )
    if v.code is not None:
        nodes.append(
            LineageNode(
                "code",
                v.code.commit or "uncommitted",
                {"branch": v.code.branch, "remote": v.code.remote, "dirty": v.code.dirty},
            )
        )
    if v.feature_pipeline:
        nodes.append(LineageNode("feature_pipeline", v.feature_pipeline))
    if v.inference_config:
        nodes.append(LineageNode("config", v.inference_config))
    project_id = conn.execute(
        select(schema.models.c.project_id)
        .join(V, V.c.model_id == schema.models.c.id)
        .where(V.c.id == version_id)
    ).scalar_one()
    for report in reports_of(conn, version_id, str(v), project_id):
        nodes.append(
            LineageNode(
                "report",
                report.digest,
                {
                    "eval_set": f"{report.eval_set_name}@{report.eval_set}",
                    "metrics": dict(report.metrics),
                    "outdated": report.outdated,
                },
            )
        )
    links = conn.execute(
        base_version_select()
        .add_columns(VP.c.relation)
        .join(VP, VP.c.parent_id == V.c.id)
        .where(VP.c.version_id == version_id)
        .order_by(VP.c.relation, V.c.id)
    ).all()
    for row in links:
        parent = version_from_row(row)
        below = _upstream(conn, ctx, parent, row.id, depth + 1) if depth < MAX_DEPTH else ()
        nodes.append(_version_node(parent, row.relation, below))
    return tuple(nodes)


def _downstream(conn: Connection, version_id: int, depth: int) -> tuple[LineageNode, ...]:
    rows = conn.execute(
        base_version_select()
        .add_columns(VP.c.relation)
        .join(VP, VP.c.version_id == V.c.id)
        .where(VP.c.parent_id == version_id)
        .order_by(V.c.id)
    ).all()
    nodes = []
    for row in rows:
        child = version_from_row(row)
        below = _downstream(conn, row.id, depth + 1) if depth < MAX_DEPTH else ()
        nodes.append(_version_node(child, f"{row.relation} of", below))
    return tuple(nodes)


def lineage(ctx: Context, ref: str) -> Lineage:
    parsed = ctx.ref(ref)
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, parsed)
        v = version_from_row(row)
        return Lineage(
            root=v.ref,
            upstream=_upstream(conn, ctx, v, row.id, 0),
            downstream=_downstream(conn, row.id, 0),
        )


def openlineage_events(ctx: Context, ref: str) -> list[dict[str, Any]]:
    """One OpenLineage COMPLETE run event for the job that produced the version: its run,
    the datasets it read, and the version itself as the output dataset."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import dataset_version_dataset
    from openlineage.client.serde import Serde

    from .versions import get

    v = get(ctx, ref)
    graph = lineage(ctx, ref)
    run_node = next((n for n in graph.upstream if n.kind == "run"), None)
    run_id = (
        str(uuid.UUID(hex=v.run_id)) if v.run_id else str(uuid.uuid5(uuid.NAMESPACE_URL, v.digest))
    )
    event_time = (run_node.facts.get("started_at") if run_node else None) or v.created_at
    inputs = [
        InputDataset(
            namespace=d.system,
            name=d.uri or d.digest or str(d.name),
            facets={
                "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=d.digest
                )
            }
            if d.digest
            else {},
        )
        for d in v.datasets
    ]
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=event_time.isoformat(),
        producer="https://github.com/modelvault/modelvault",
        run=Run(runId=run_id),
        job=Job(namespace=f"modelvault://{v.project}", name=v.model),
        inputs=inputs,
        outputs=[
            OutputDataset(namespace=f"modelvault://{v.project}", name=f"{v.model}:{v.number}")
        ],
    )
    data: dict[str, Any] = json.loads(Serde.to_json(event))
    return [data]
