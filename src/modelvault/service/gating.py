"""Evaluating the gate of a stage for one version: approvals, the required evaluation set and
metric rules, with production's values for comparisons. Used by ``promote`` (which blocks
on a failure) and by ``gate`` (which only reports)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from ..errors import NotFound
from ..gates import check_rule
from ..lifecycle import Stage, parse_stage
from ..policy import ProjectPolicy, load_policy
from ..store import schema
from ..tracking.records import GateCheck, GateReport
from .context import Context, version_row
from .evaluations import newest_report
from .records import version_from_row
from .snapshots import snapshot_row

S, V, AP = schema.stage_intervals, schema.versions, schema.approvals


def approvers(conn: Connection, version_id: int, creator: str) -> list[str]:
    rows = conn.execute(select(AP.c.approver).where(AP.c.version_id == version_id)).scalars()
    return sorted({a for a in rows if a != creator})


def policy_for(ctx: Context, project: str, model: str) -> ProjectPolicy:
    return load_policy(ctx.settings.policy).for_model(project, model)


def _production_row(conn: Connection, ctx: Context, row: Any) -> Any:
    from ..refs import Ref

    try:
        prod = version_row(conn, ctx, Ref(row.project_name, row.model_name, stage="production"))
    except NotFound:
        return None
    return None if prod.id == row.id else prod


def evaluate(conn: Connection, ctx: Context, row: Any, target: Stage) -> GateReport:
    """The gate report for moving the version *row* into *target*."""
    policy = policy_for(ctx, row.project_name, row.model_name)
    gate = policy.gate(target.value)
    version = f"{row.project_name}/{row.model_name}:{row.number}"
    project_id = conn.execute(
        select(schema.models.c.project_id).where(schema.models.c.id == row.model_id)
    ).scalar_one()
    checks: list[GateCheck] = []
    needed = gate.approvals or 0
    if needed:
        have = approvers(conn, row.id, row.created_by)
        checks.append(
            GateCheck(
                rule=f"approvals >= {needed}",
                required=f">= {needed}, none by the creator {row.created_by}",
                actual=f"{len(have)}" + (f" ({', '.join(have)})" if have else ""),
                passed=len(have) >= needed,
            )
        )
    rules = gate.rules or ()
    prod = _production_row(conn, ctx, row) if any(r.compares_production for r in rules) else None
    eval_digest = None
    values: dict[str, float] | None
    prod_values: dict[str, float] | None = None
    if gate.eval_set is not None:
        try:
            snap = snapshot_row(conn, gate.eval_set, row.project_name)
        except NotFound:
            checks.append(
                GateCheck(
                    rule=f"evaluated on {gate.eval_set}",
                    required="a report on the evaluation set",
                    actual=f"no snapshot {gate.eval_set} exists",
                    passed=False,
                )
            )
            return GateReport(version, target.value, tuple(checks), None)
        eval_digest = snap.digest
        report = newest_report(conn, row.id, version, snap.digest, project_id)
        checks.append(
            GateCheck(
                rule=f"evaluated on {gate.eval_set}",
                required=f"a report on {snap.name}@{snap.digest[:19]}",
                actual=f"report {report.digest[:19]}" if report else "no report on this set",
                passed=report is not None,
            )
        )
        values = report.values() if report else {}
        if prod is not None:
            prod_ref = f"{prod.project_name}/{prod.model_name}:{prod.number}"
            prod_report = newest_report(conn, prod.id, prod_ref, snap.digest, project_id)
            prod_values = prod_report.values() if prod_report else {}
    else:
        values = dict(version_from_row(row).metrics)
        if prod is not None:
            prod_values = dict(version_from_row(prod).metrics)
    for rule in rules:
        required, actual, passed = check_rule(
            rule, values, prod_values if prod is not None else None
        )
        checks.append(GateCheck(rule=rule.text, required=required, actual=actual, passed=passed))
    return GateReport(version, target.value, tuple(checks), eval_digest)


def check_gate(ctx: Context, ref: str, to: str) -> GateReport:
    target = parse_stage(to)
    parsed = ctx.ref(ref)
    with ctx.store.read() as conn:
        row = version_row(conn, ctx, parsed)
        return evaluate(conn, ctx, row, target)
