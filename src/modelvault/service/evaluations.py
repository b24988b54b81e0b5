"""Evaluation reports: record one (immutable, keyed by the evaluation set's digest), list a
version's reports, find the newest on a set, and compare two versions' behaviour on a set.

A report is outdated when a newer snapshot with the same name as its evaluation set exists:
the numbers are right for the set they were measured on, which is no longer the current one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select

from ..audit import EventDraft, append
from ..canonical import canonical_json, sha256_digest
from ..errors import InvalidInput, NotFound
from ..evaluation import distance, percentiles, plain
from ..limits import check_metrics
from ..store import schema
from ..timeutil import from_text, to_text
from ..tracking.records import BehaviourComparison, EvaluationReport, ExampleChange, Snapshot
from .context import Context, version_row
from .snapshots import newest_digest, snapshot_row

ER, V, M = schema.eval_reports, schema.versions, schema.models
REPORT_FORMAT = "modelvault.evaluation/1"


def _report_from(row: Any, version: str, newest: str | None) -> EvaluationReport:
    record = json.loads(row.record)
    return EvaluationReport(
        id=row.id,
        version=version,
        eval_set=row.eval_set,
        digest=row.digest,
        created_by=row.created_by,
        created_at=from_text(row.created_at),
        eval_set_name=row.eval_set_name,
        metrics=record.get("metrics") or {},
        latency_ms=record.get("latency_ms") or {},
        cost_per_request=record.get("cost_per_request"),
        examples=record.get("examples"),
        outputs_digest=record.get("outputs"),
        outdated=newest is not None and newest != row.eval_set,
    )


def _check_latency(latency: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in latency.items():
        if key not in ("p50", "p95", "p99"):
            raise InvalidInput(f"latency keys are p50, p95 and p99, not {key!r}", field="latency")
        out[key] = check_metrics({"latency": value})["latency"]
    return out


def outputs_blob(labels: Sequence[Any], outputs: Sequence[Any]) -> bytes:
    if len(outputs) != len(labels):
        raise InvalidInput(
            f"{len(outputs)} outputs for an evaluation set of {len(labels)} examples: give one "
            "output per example",
            field="outputs",
        )
    lines = [
        canonical_json({"i": i, "label": plain(y), "output": plain(o)}).decode("utf-8")
        for i, (y, o) in enumerate(zip(labels, outputs, strict=True))
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def record_report(
    ctx: Context,
    ref: str,
    eval_set: str,
    project: str,
    *,
    metrics: Mapping[str, Any],
    latency_ms: Mapping[str, Any] | Sequence[float] | None = None,
    cost_per_request: float | None = None,
    examples: int | None = None,
    outputs: bytes | None = None,
) -> EvaluationReport:
    values = check_metrics(metrics)
    if isinstance(latency_ms, Mapping):
        latency = _check_latency(latency_ms)
    else:
        latency = percentiles([float(x) for x in latency_ms or ()])
    if cost_per_request is not None:
        cost_per_request = check_metrics({"cost_per_request": cost_per_request})["cost_per_request"]
    outputs_digest = ctx.blobs.put_bytes(outputs).digest if outputs is not None else None
    if outputs_digest:
        ctx.blobs.sync()
    parsed = ctx.ref(ref)
    with ctx.store.write() as conn:
        at = ctx.now()
        row = version_row(conn, ctx, parsed)
        snap = snapshot_row(conn, eval_set, row.project_name)
        version = f"{row.project_name}/{row.model_name}:{row.number}"
        record = {
            "format": REPORT_FORMAT,
            "version": version,
            "version_digest": row.digest,
            "eval_set": snap.digest,
            "eval_set_name": snap.name,
            "metrics": values,
            "latency_ms": latency,
            "cost_per_request": cost_per_request,
            "examples": examples,
            "outputs": outputs_digest,
            "created_by": ctx.actor,
            "created_at": to_text(at),
        }
        body = canonical_json(record)
        digest = sha256_digest(body)
        event = append(
            conn,
            EventDraft(
                "eval.record",
                version,
                project=row.project_name,
                model=row.model_name,
                after={
                    "version": row.number,
                    "eval_set": snap.digest,
                    "eval_set_name": snap.name,
                    "report": digest,
                    "metrics": values,
                },
            ),
            actor=ctx.actor,
            at=at,
        )
        new_id = conn.execute(
            insert(ER)
            .values(
                version_id=row.id,
                eval_set=snap.digest,
                eval_set_name=snap.name,
                digest=digest,
                record=body.decode("utf-8"),
                created_by=ctx.actor,
                created_at=to_text(at),
                audit_seq=event.seq,
            )
            .returning(ER.c.id)
        ).scalar_one()
        stored = conn.execute(select(ER).where(ER.c.id == new_id)).one()
        newest = newest_digest(conn, snap.project_id, snap.name)
    return _report_from(stored, version, newest)


def reports_of(
    conn: Connection, version_id: int, version: str, project_id: int
) -> list[EvaluationReport]:
    rows = conn.execute(select(ER).where(ER.c.version_id == version_id).order_by(ER.c.id)).all()
    newest: dict[str, str | None] = {}
    out = []
    for r in rows:
        if r.eval_set_name not in newest:
            newest[r.eval_set_name] = newest_digest(conn, project_id, r.eval_set_name)
        out.append(_report_from(r, version, newest[r.eval_set_name]))
    return out


def _project_id(conn: Connection, model_id: int) -> int:
    return int(conn.execute(select(M.c.project_id).where(M.c.id == model_id)).scalar_one())


def list_reports(ctx: Context, ref: str) -> list[EvaluationReport]:
    parsed = ctx.ref(ref)
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, parsed)
        version = f"{row.project_name}/{row.model_name}:{row.number}"
        return reports_of(conn, row.id, version, _project_id(conn, row.model_id))


def newest_report(
    conn: Connection, version_id: int, version: str, eval_set_digest: str, project_id: int
) -> EvaluationReport | None:
    row = conn.execute(
        select(ER)
        .where(ER.c.version_id == version_id, ER.c.eval_set == eval_set_digest)
        .order_by(ER.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return _report_from(row, version, newest_digest(conn, project_id, row.eval_set_name))


def report_outputs(ctx: Context, report: EvaluationReport) -> list[dict[str, Any]] | None:
    if report.outputs_digest is None:
        return None
    data = ctx.blobs.read_bytes(report.outputs_digest)
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]


def compare_outputs(
    a: str,
    b: str,
    snap: Snapshot,
    report_a: EvaluationReport,
    report_b: EvaluationReport,
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    top: int = 10,
) -> BehaviourComparison:
    if len(rows_a) != len(rows_b):
        raise InvalidInput(
            f"the reports hold {len(rows_a)} and {len(rows_b)} outputs; they were not made on "
            "the same examples",
            field="eval_set",
        )
    if not rows_a:
        raise NotFound("the reports hold no per-example outputs to compare")
    changes = []
    agree = 0
    for ra, rb in zip(rows_a, rows_b, strict=True):
        d = distance(ra["output"], rb["output"])
        if d == 0:
            agree += 1
        else:
            changes.append(ExampleChange(ra["i"], ra.get("label"), ra["output"], rb["output"], d))
    changes.sort(key=lambda c: (-c.distance, c.index))
    keys = sorted(set(report_a.values()) | set(report_b.values()))
    metrics: dict[str, tuple[float | None, float | None, float | None]] = {}
    va, vb = report_a.values(), report_b.values()
    for k in keys:
        x, y = va.get(k), vb.get(k)
        metrics[k] = (x, y, (y - x) if x is not None and y is not None else None)
    return BehaviourComparison(
        a=a,
        b=b,
        eval_set=snap.ref,
        examples=len(rows_a),
        metrics=metrics,
        agreement=agree / len(rows_a),
        changed=tuple(changes[:top]),
    )
