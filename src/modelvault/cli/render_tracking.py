"""Human renderings of tracking records: runs, snapshots, reports, gates, comparisons and
lineage trees. JSON output does not come through here (it is ``as_json`` of the record)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tracking.records import (
    BehaviourComparison,
    EvaluationReport,
    GateCheck,
    GateReport,
    Lineage,
    LineageNode,
    Run,
    RunComparison,
    Snapshot,
    SnapshotDiff,
)
from .output import fields, stdout, table
from .render import _when


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def runs(found: Sequence[Run]) -> None:
    table(
        None,
        ["run", "experiment", "name", "status", "started", "by", "metrics"],
        [
            (
                r.id[:12],
                r.experiment,
                r.name,
                r.status,
                _when(r.started_at),
                r.created_by,
                ", ".join(f"{k}={_num(v)}" for k, v in list(r.metrics.items())[:4]),
            )
            for r in found
        ],
    )


def run(r: Run) -> None:
    env = r.environment
    code = r.code
    fields(
        [
            ("run", r.id),
            ("experiment", f"{r.project}/{r.experiment}"),
            ("name", r.name),
            ("parent", r.parent_id),
            ("status", r.status + (f" ({r.failure})" if r.failure else "")),
            ("started", f"{_when(r.started_at)} by {r.created_by}"),
            ("ended", _when(r.ended_at)),
            ("params", ", ".join(f"{k}={v}" for k, v in r.params.items())),
            ("metrics", ", ".join(f"{k}={_num(v)}" for k, v in r.metrics.items())),
            ("tags", ", ".join(f"{k}={v}" for k, v in r.tags.items())),
            ("inputs", "; ".join(f"{i.role}: {i.snapshot.ref}" for i in r.inputs)),
            ("artifacts", ", ".join(a.path for a in r.artifacts)),
            ("versions", ", ".join(r.versions)),
            (
                "code",
                f"{code.commit} ({code.branch}{', dirty' if code.dirty else ''})" if code else None,
            ),
            ("python", f"{env.python} on {env.platform}" if env else None),
            ("command", " ".join(r.command)),
        ]
    )


def comparison(c: RunComparison) -> None:
    headers = ["key", *[r[:12] for r in c.runs]]
    rows: list[list[Any]] = []
    for section, values in (("param", c.params), ("metric", c.metrics)):
        for key, per_run in values.items():
            mark = " *" if key in c.differs else ""
            rows.append([f"{section} {key}{mark}", *[_num(v) for v in per_run]])
    table("* differs between runs", headers, rows)


def snapshots(found: Sequence[Snapshot]) -> None:
    table(
        None,
        ["name", "digest", "system", "files", "bytes", "stored", "created"],
        [
            (
                s.name,
                s.digest[:23],
                s.system,
                s.file_count,
                s.size,
                "yes" if s.stored else "",
                _when(s.created_at),
            )
            for s in found
        ],
    )


def snapshot(s: Snapshot) -> None:
    fields(
        [
            ("snapshot", s.ref),
            ("system", s.system),
            ("source", s.uri),
            ("files", s.file_count),
            ("bytes", s.size),
            ("data stored", "yes" if s.stored else "no (manifest only)"),
            ("created", f"{_when(s.created_at)} by {s.created_by}"),
        ]
    )


def snapshot_diff(d: SnapshotDiff) -> None:
    if d.identical:
        stdout.print(f"{d.a} and {d.b} hold the same files")
        return
    rows: list[tuple[str, str, str | None, str | None]] = [
        ("added", c.path, "", c.b) for c in d.added
    ]
    rows += [("removed", c.path, c.a, "") for c in d.removed]
    rows += [("changed", c.path, c.a, c.b) for c in d.changed]
    table(
        f"{d.a} -> {d.b}",
        ["change", "path", "digest in A", "digest in B"],
        [(k, p, (a or "")[:19], (b or "")[:19]) for k, p, a, b in rows],
    )


def reports(found: Sequence[EvaluationReport]) -> None:
    table(
        None,
        ["report", "eval set", "metrics", "p95 ms", "examples", "created", "outdated"],
        [
            (
                r.digest[:19],
                f"{r.eval_set_name}@{r.eval_set[:15]}",
                ", ".join(f"{k}={_num(v)}" for k, v in r.metrics.items()),
                _num(r.latency_ms.get("p95")),
                r.examples,
                _when(r.created_at),
                "OUTDATED" if r.outdated else "",
            )
            for r in found
        ],
    )


def gate_rows(checks: Sequence[GateCheck] | Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for c in checks:
        item = (
            c
            if isinstance(c, Mapping)
            else {
                "rule": c.rule,
                "required": c.required,
                "actual": c.actual,
                "passed": c.passed,
            }
        )
        out.append(
            (
                str(item["rule"]),
                str(item["required"]),
                str(item["actual"]),
                "pass" if item["passed"] else "FAIL",
            )
        )
    return out


def gate_text(checks: Sequence[Mapping[str, Any]]) -> str:
    """The rule table as plain text, for an error message."""
    rows = [("rule", "required", "actual", "result"), *gate_rows(checks)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def gate(report: GateReport) -> None:
    verdict = "passes" if report.passed else "FAILS"
    title = f"{report.version} {verdict} the gate to {report.stage}"
    if not report.checks:
        stdout.print(f"{title} (no rules)")
        return
    table(title, ["rule", "required", "actual", "result"], gate_rows(report.checks))


def behaviour(c: BehaviourComparison) -> None:
    table(
        f"{c.a} vs {c.b} on {c.eval_set} ({c.examples} examples, {c.agreement:.1%} agree)",
        ["metric", "A", "B", "B - A"],
        [(k, _num(a), _num(b), _num(d)) for k, (a, b, d) in c.metrics.items()],
    )
    if c.changed:
        table(
            "examples whose outputs changed most",
            ["example", "label", "A", "B", "distance"],
            [(e.index, e.label, e.a, e.b, _num(e.distance)) for e in c.changed],
        )


def _tree_add(tree: Any, node: LineageNode) -> None:
    facts = ", ".join(
        f"{k}={_num(v) if not isinstance(v, dict) else v}"
        for k, v in node.facts.items()
        if v not in (None, "", {}, False)
    )
    branch = tree.add(f"[bold]{node.kind}[/bold] {node.id}" + (f"  ({facts})" if facts else ""))
    for child in node.children:
        _tree_add(branch, child)


def lineage(graph: Lineage) -> None:
    from rich.tree import Tree

    root = Tree(f"[bold]{graph.root}[/bold]")
    up = root.add("upstream")
    for node in graph.upstream:
        _tree_add(up, node)
    down = root.add("downstream")
    for node in graph.downstream:
        _tree_add(down, node)
    stdout.print(root)
