"""Human renderings of domain objects (Rich tables); the JSON shapes come from as_json."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain import (
    AliasInterval,
    Approval,
    AuditEvent,
    Change,
    Model,
    StageInterval,
    Transition,
    Version,
    VersionDiff,
)
from ..timeutil import to_text
from .output import fields, message, stdout, table


def _when(value: object) -> str:
    from datetime import datetime

    return to_text(value)[:19].replace("T", " ") if isinstance(value, datetime) else ""


def models(found: Sequence[Model]) -> None:
    table(
        None,
        ["model", "latest", "production", "created by", "created"],
        [
            (m.name, m.latest_version, m.production_version, m.created_by, _when(m.created_at))
            for m in found
        ],
    )


def versions(found: Sequence[Version]) -> None:
    table(
        None,
        ["version", "label", "stage", "kind", "size", "created by", "created", "digest"],
        [
            (
                f"{v.model}:{v.number}",
                v.label,
                v.stage,
                v.kind,
                v.size,
                v.created_by,
                _when(v.created_at),
                v.digest[:19],
            )
            for v in found
        ],
    )


def version(v: Version, approvals: Sequence[Approval]) -> None:
    code = v.code
    env = v.environment
    fields(
        [
            ("version", f"{v.project}/{v.model}:{v.number}"),
            ("stage", v.stage),
            ("label", v.label),
            ("kind", v.kind),
            ("flavor", v.flavor),
            ("digest", v.digest),
            ("artifact", f"{v.artifact_digest} ({v.file_count} files, {v.size} bytes)"),
            ("created", f"{_when(v.created_at)} by {v.created_by}"),
            ("run", v.run_id),
            ("description", v.description),
            ("params", ", ".join(f"{k}={val}" for k, val in v.params.items())),
            ("metrics", ", ".join(f"{k}={val:g}" for k, val in v.metrics.items())),
            ("tags", ", ".join(f"{k}={val}" for k, val in v.tags.items())),
            (
                "datasets",
                "; ".join(f"{d.name or ''} {d.digest or d.uri}".strip() for d in v.datasets),
            ),
            (
                "code",
                f"{code.commit} on {code.branch}{' (dirty)' if code.dirty else ''}"
                if code
                else None,
            ),
            (
                "environment",
                f"Python {env.python} on {env.platform}, {env.package_count} packages"
                if env
                else None,
            ),
            ("parents", ", ".join(v.parents)),
            ("components", ", ".join(v.components)),
            ("approvals", ", ".join(f"{a.approver} ({_when(a.created_at)})" for a in approvals)),
        ]
    )


def transition(t: Transition) -> None:
    extra = f"; {t.model}:{t.replaced} archived" if t.replaced is not None else ""
    message(f"{t.model}:{t.version} {t.from_stage} -> {t.to_stage}{extra} (audit #{t.audit_seq})")


def stage_history(found: Sequence[StageInterval]) -> None:
    table(
        None,
        ["version", "stage", "from", "to", "by", "reason", "ended"],
        [
            (
                f"{i.model}:{i.version}",
                i.stage,
                _when(i.valid_from),
                _when(i.valid_to),
                i.set_by,
                i.reason,
                i.end_reason,
            )
            for i in found
        ],
    )


def alias_history(found: Sequence[AliasInterval]) -> None:
    table(
        None,
        ["alias", "version", "from", "to", "set by", "removed by"],
        [
            (a.alias, a.version, _when(a.valid_from), _when(a.valid_to), a.set_by, a.removed_by)
            for a in found
        ],
    )


def _changes(title: str, changes: Sequence[Change], numeric: bool = False) -> None:
    if not changes:
        return
    cols = ["key", "A", "B", "delta"] if numeric else ["key", "A", "B"]
    rows = []
    for c in changes:
        row = [c.key, "-" if c.a is None else c.a, "-" if c.b is None else c.b]
        if numeric:
            row.append("" if c.delta is None else f"{c.delta:+g}")
        rows.append(row)
    table(title, cols, rows)


def diff(d: VersionDiff) -> None:
    stdout.print(f"{d.a} -> {d.b}")
    if d.identical:
        message("no differences")
        return
    for c in d.feature_pipeline:
        message(
            f"[bold]feature pipeline changed[/bold]: {c.a or '(none)'} -> {c.b or '(none)'}; "
            "inputs for B must be built with its pipeline"
        )
    _changes("params", d.params)
    _changes("metrics", d.metrics, numeric=True)
    _changes("tags", d.tags)
    _changes("datasets", d.datasets)
    _changes("code", d.code)
    _changes("packages", d.packages)
    _changes("files", d.files)
    _changes("config", d.config)
    _changes("other", d.other)


def audit(events: Sequence[AuditEvent]) -> None:
    table(
        None,
        ["seq", "time", "actor", "action", "subject", "reason"],
        [(e.seq, _when(e.ts), e.actor, e.action, e.subject, e.reason) for e in events],
    )
