"""Run use-cases: start and end runs, write-once params, tags, metric batches, artifacts and
inputs, and reading runs back. Each change is one transaction with its audit event.

A metric batch is audited as one event holding the count, the keys, the step range and the
digest of the batch, so the chain stays small while any later edit of a point is provable.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..audit import EventDraft, append
from ..canonical import canonical_json, sha256_digest
from ..domain import CodeRef, EnvironmentInfo, frozen_map
from ..errors import Conflict, InvalidInput, NotFound
from ..limits import LIMITS, check_key, check_name, check_params, check_tags, check_text
from ..manifest import scan
from ..store import schema
from ..timeutil import from_text, to_text
from ..tracking.records import (
    MetricPoint,
    Run,
    RunArtifact,
    RunComparison,
    RunInput,
    Snapshot,
)
from .context import Context, ensure_project

R, E, P = schema.runs, schema.experiments, schema.projects
RP, RT, RM = schema.run_params, schema.run_tags, schema.run_metrics
RA, RI, SN = schema.run_artifacts, schema.run_inputs, schema.snapshots
RUN_FORMAT = "modelvault.run/1"
ENDED = ("finished", "failed", "killed")
ROLES = ("train", "validation", "eval", "test", "input")
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# (key, value, step, unix time in microseconds)
Point = tuple[str, float, int, int]


def _subject(run_id: str) -> str:
    return f"run:{run_id}"


def _run_row(conn: Connection, run_id: str, project: str) -> Any:
    """The run named by its id or a unique prefix of at least 6 characters."""
    text = run_id.strip().lower() if isinstance(run_id, str) else ""
    if not 6 <= len(text) <= 32 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidInput(
            f"run id {str(run_id)[:40]!r} must be 6-32 hexadecimal characters", field="run"
        )
    query = (
        select(R, E.c.name.label("experiment"), P.c.name.label("project"))
        .select_from(R.join(E, R.c.experiment_id == E.c.id).join(P, E.c.project_id == P.c.id))
        .where(P.c.name == project)
    )
    if len(text) == 32:
        rows = conn.execute(query.where(R.c.id == text)).all()
    else:
        upper = text[:-1] + chr(ord(text[-1]) + 1)
        rows = conn.execute(query.where(R.c.id >= text, R.c.id < upper).limit(2)).all()
    if not rows:
        raise NotFound(f"run {text} does not exist in project {project}", run=text)
    if len(rows) > 1:
        raise InvalidInput(f"run id prefix {text} names more than one run; give more of it")
    return rows[0]


def _running(row: Any) -> None:
    if row.status != "running":
        raise Conflict(
            f"run {row.id} has ended ({row.status}); it can no longer change", run=row.id
        )


def _ensure_experiment(
    conn: Connection, ctx: Context, project: str, name: str, at: datetime
) -> int:
    project_id = ensure_project(conn, ctx, project, at)
    found = conn.execute(
        select(E.c.id).where(E.c.project_id == project_id, E.c.name == name)
    ).scalar()
    if found is not None:
        return int(found)
    new_id = conn.execute(
        insert(E)
        .values(project_id=project_id, name=name, created_by=ctx.actor, created_at=to_text(at))
        .returning(E.c.id)
    ).scalar_one()
    append(
        conn,
        EventDraft(
            "experiment.create", f"{project}/{name}", project=project, after={"experiment": name}
        ),
        actor=ctx.actor,
        at=at,
    )
    return int(new_id)


def start_run(
    ctx: Context,
    *,
    experiment: str,
    project: str,
    record: Mapping[str, Any],
    name: str | None = None,
    parent_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Run:
    check_name(experiment, what="experiment name")
    check_text(name, limit="label_chars", what="run name")
    tag_values = check_tags(tags or {})
    body = canonical_json({"format": RUN_FORMAT, **record})
    run_id = uuid.uuid4().hex
    with ctx.store.write() as conn:
        at = ctx.now()
        parent = None
        if parent_id is not None:
            parent = _run_row(conn, parent_id, project)
            _running(parent)
        experiment_id = _ensure_experiment(conn, ctx, project, experiment, at)
        conn.execute(
            insert(R).values(
                id=run_id,
                experiment_id=experiment_id,
                parent_id=parent.id if parent is not None else None,
                name=name,
                status="running",
                started_at=to_text(at),
                created_by=ctx.actor,
                record=body.decode("utf-8"),
            )
        )
        if tag_values:
            conn.execute(
                insert(RT),
                [{"run_id": run_id, "key": k, "value": v} for k, v in tag_values.items()],
            )
        append(
            conn,
            EventDraft(
                "run.start",
                _subject(run_id),
                project=project,
                after={
                    "run": run_id,
                    "experiment": experiment,
                    "name": name,
                    "parent": parent.id if parent is not None else None,
                    "record": sha256_digest(body),
                    "tags": tag_values,
                },
            ),
            actor=ctx.actor,
            at=at,
        )
    return get_run(ctx, run_id, project)


def log_params(
    ctx: Context, run_id: str, params: Mapping[str, Any], project: str
) -> dict[str, Any]:
    """Write-once: a key logged again with the same value is a no-op; with another value it is
    a Conflict naming the key. Returns the params that were new."""
    values = check_params(params)
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _run_row(conn, run_id, project)
        _running(row)
        have = {
            r.key: json.loads(r.value)
            for r in conn.execute(
                select(RP.c.key, RP.c.value).where(
                    RP.c.run_id == row.id, RP.c.key.in_(list(values))
                )
            )
        }
        for key, value in values.items():
            if key in have and canonical_json(have[key]) != canonical_json(value):
                raise Conflict(
                    f"param {key!r} of run {row.id} is already {have[key]!r}; params are "
                    f"write-once and cannot become {value!r}",
                    run=row.id,
                    key=key,
                )
        new = {k: v for k, v in values.items() if k not in have}
        if not new:
            return {}
        conn.execute(
            insert(RP),
            [
                {"run_id": row.id, "key": k, "value": canonical_json(v).decode("utf-8")}
                for k, v in new.items()
            ],
        )
        append(
            conn,
            EventDraft("run.params", _subject(row.id), project=project, after=new),
            actor=ctx.actor,
            at=at,
        )
    return new


def set_tags(ctx: Context, run_id: str, tags: Mapping[str, Any], project: str) -> None:
    values = check_tags(tags)
    if not values:
        return
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _run_row(conn, run_id, project)
        before = {
            r.key: r.value
            for r in conn.execute(
                select(RT.c.key, RT.c.value).where(
                    RT.c.run_id == row.id, RT.c.key.in_(list(values))
                )
            )
        }
        changed = {k: v for k, v in values.items() if before.get(k) != v}
        if not changed:
            return
        for key, value in changed.items():
            if key in before:
                conn.execute(
                    update(RT).where(RT.c.run_id == row.id, RT.c.key == key).values(value=value)
                )
            else:
                conn.execute(insert(RT).values(run_id=row.id, key=key, value=value))
        append(
            conn,
            EventDraft(
                "run.tags",
                _subject(row.id),
                project=project,
                before={k: before[k] for k in changed if k in before} or None,
                after=changed,
            ),
            actor=ctx.actor,
            at=at,
        )


def metric_value(key: str, value: Any) -> float:
    """A metric value as stored; NaN and infinities are kept (a diverging loss is a fact)."""
    if isinstance(value, bool):
        raise InvalidInput(f"metric {key!r} must be a number, got {value!r}", field="metric")
    if not isinstance(value, int | float):
        try:
            return float(value)  # numpy scalars and the like
        except (TypeError, ValueError):
            raise InvalidInput(
                f"metric {key!r} must be a number, got {str(value)[:40]!r}", field="metric"
            ) from None
    return float(value)


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def _insert_points_sql(paramstyle: str) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO {RM.name} (run_id, key, step, ts_us, value, special) "
        f"VALUES ({', '.join([mark] * 6)})"
    )


def log_metrics(ctx: Context, run_id: str, points: Sequence[Point], project: str) -> int:
    """Store a batch of metric points (already checked) in one transaction.

    The rows go to the driver's executemany directly: building SQLAlchemy parameters per
    row cost twice the insert itself, and this is the path a training loop feeds."""
    if not points:
        return 0
    listing = []
    for key, value, step, ts_us in points:
        special = _special(value)
        listing.append((key, special or value, step, ts_us, None if special else value, special))
    keys = sorted({p[0] for p in points})
    steps = [p[2] for p in points]
    digest = sha256_digest(canonical_json([row[:4] for row in listing]))
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _run_row(conn, run_id, project)
        _running(row)
        conn.exec_driver_sql(
            _insert_points_sql(conn.dialect.paramstyle),
            [(row.id, k, s, t, v, sp) for k, _, s, t, v, sp in listing],
        )
        append(
            conn,
            EventDraft(
                "run.metrics",
                _subject(row.id),
                project=project,
                after={
                    "points": len(listing),
                    "keys": keys[:20],
                    "more_keys": max(0, len(keys) - 20),
                    "steps": [min(steps), max(steps)],
                    "digest": digest,
                },
            ),
            actor=ctx.actor,
            at=at,
        )
    return len(listing)


def end_run(
    ctx: Context, run_id: str, status: str, project: str, failure: str | None = None
) -> Run:
    if status not in ENDED:
        raise InvalidInput(
            f"a run ends as finished, failed or killed, not {status!r}", field="status"
        )
    failure = check_text(failure, limit="reason_chars", what="failure")
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _run_row(conn, run_id, project)
        _running(row)
        conn.execute(
            update(R)
            .where(R.c.id == row.id, R.c.status == "running")
            .values(status=status, ended_at=to_text(at), failure=failure)
        )
        append(
            conn,
            EventDraft(
                "run.end",
                _subject(row.id),
                project=project,
                before={"status": "running"},
                after={"status": status},
                reason=failure,
            ),
            actor=ctx.actor,
            at=at,
        )
    return get_run(ctx, row.id, project)


def artifact_prefix(path: Path, artifact_path: str | None) -> str:
    """Where a logged file or directory goes under the run (default: its own name)."""
    prefix = artifact_path if artifact_path is not None else path.name
    if prefix:
        from ..manifest import path_problem

        problem = path_problem(prefix)
        if problem is not None:
            raise InvalidInput(f"artifact path {prefix!r} {problem}", field="artifact_path")
    return prefix


def artifact_name(path: Path, prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if path.is_dir() and prefix else prefix or relative


def log_artifact(
    ctx: Context, run_id: str, path: Path, project: str, artifact_path: str | None = None
) -> list[RunArtifact]:
    """Copy a file or directory into the blob store and list it under the run, below
    *artifact_path* (default: the file's or directory's own name)."""
    prefix = artifact_prefix(path, artifact_path)
    files = scan(path)
    with ctx.store.read() as conn:
        _running(_run_row(conn, run_id, project))
    entries = []
    for item in files:
        put = ctx.blobs.put_file(item.source)
        name = artifact_name(path, prefix, item.path)
        entries.append(RunArtifact(path=name, digest=put.digest, size=put.size))
    ctx.blobs.sync()
    return record_artifacts(ctx, run_id, project, entries)


def record_uploaded_artifacts(
    ctx: Context,
    run_id: str,
    project: str,
    entries: Sequence[RunArtifact],
    unproven: Callable[[list[str]], list[str]] | None = None,
) -> list[RunArtifact]:
    """List files a client uploaded first under the run (the remote SDK): every path is
    checked and every blob must be stored, with the size claimed; *unproven* names the
    blobs the caller may not name (treated as absent)."""
    from ..manifest import path_problem

    if not entries:
        raise InvalidInput("give at least one artifact file", field="files")
    if len(entries) > LIMITS["files_per_version"]:
        raise InvalidInput(f"at most {LIMITS['files_per_version']} files at once", field="files")
    for e in entries:
        problem = path_problem(e.path)
        if problem is not None:
            raise InvalidInput(f"artifact path {e.path!r} {problem}", field="files")
    if len({e.path for e in entries}) != len(entries):
        raise InvalidInput("two artifact files have the same path", field="files")
    # a blob the caller may not name is as absent as one stored nowhere (same answer)
    refused = set(unproven([e.digest for e in entries])) if unproven is not None else set()
    for e in entries:
        if e.digest in refused or not ctx.blobs.exists(e.digest):
            raise NotFound(f"the blob of {e.path} is not uploaded ({e.digest})", digest=e.digest)
        if ctx.blobs.size(e.digest) != e.size:
            raise InvalidInput(f"{e.path}: the size given does not match its blob", field="files")
    return record_artifacts(ctx, run_id, project, list(entries))


def record_artifacts(
    ctx: Context, run_id: str, project: str, entries: list[RunArtifact]
) -> list[RunArtifact]:
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _run_row(conn, run_id, project)
        _running(row)
        taken = set(
            conn.execute(
                select(RA.c.path).where(
                    RA.c.run_id == row.id, RA.c.path.in_([e.path for e in entries])
                )
            ).scalars()
        )
        if taken:
            raise Conflict(
                f"run {row.id} already has an artifact at {sorted(taken)[0]!r}; artifacts are "
                "write-once",
                run=row.id,
            )
        conn.execute(
            insert(RA),
            [
                {"run_id": row.id, "path": e.path, "digest": e.digest, "size": e.size}
                for e in entries
            ],
        )
        append(
            conn,
            EventDraft(
                "run.artifact",
                _subject(row.id),
                project=project,
                after={"files": {e.path: e.digest for e in entries[:100]}, "count": len(entries)},
            ),
            actor=ctx.actor,
            at=at,
        )
    return entries


def use_dataset(ctx: Context, run_id: str, snapshot_id: int, role: str, project: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"dataset role must be one of {', '.join(ROLES)}, not {role!r}")
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _run_row(conn, run_id, project)
        _running(row)
        snap = conn.execute(select(SN.c.name, SN.c.digest).where(SN.c.id == snapshot_id)).one()
        exists = conn.execute(
            select(RI.c.run_id).where(
                RI.c.run_id == row.id, RI.c.snapshot_id == snapshot_id, RI.c.role == role
            )
        ).first()
        if exists is not None:
            return
        conn.execute(insert(RI).values(run_id=row.id, snapshot_id=snapshot_id, role=role))
        append(
            conn,
            EventDraft(
                "run.input",
                _subject(row.id),
                project=project,
                after={"dataset": snap.name, "digest": snap.digest, "role": role},
            ),
            actor=ctx.actor,
            at=at,
        )


# -- reading ----------------------------------------------------------------------------------


def _value(row: Any) -> float:
    return _SPECIAL[row.special] if row.special else float(row.value)


def _final_metrics(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """The last point of every series (highest step, then the latest logged) per run."""
    if not run_ids:
        return {}
    ranked = (
        select(
            RM.c.run_id,
            RM.c.key,
            RM.c.value,
            RM.c.special,
            func.row_number()
            .over(partition_by=(RM.c.run_id, RM.c.key), order_by=(RM.c.step.desc(), RM.c.id.desc()))
            .label("rank"),
        )
        .where(RM.c.run_id.in_(list(run_ids)))
        .subquery()
    )
    out: dict[str, dict[str, float]] = {r: {} for r in run_ids}
    for r in conn.execute(select(ranked).where(ranked.c.rank == 1)):
        out[r.run_id][r.key] = _value(r)
    return out


def snapshot_from_row(row: Any, project: str) -> Snapshot:
    return Snapshot(
        project=project,
        name=row.name,
        system=row.system,
        digest=row.digest,
        created_by=row.created_by,
        created_at=from_text(row.created_at),
        uri=row.uri,
        file_count=row.file_count,
        size=row.size,
        stored=bool(row.stored),
    )


def _run_from(conn: Connection, row: Any, metrics: dict[str, float], full: bool) -> Run:
    record = json.loads(row.record)
    params: dict[str, Any] = {}
    tags: dict[str, str] = {}
    inputs: list[RunInput] = []
    artifacts: list[RunArtifact] = []
    versions: list[str] = []
    if full:
        params = {
            r.key: json.loads(r.value)
            for r in conn.execute(select(RP).where(RP.c.run_id == row.id))
        }
        tags = {r.key: r.value for r in conn.execute(select(RT).where(RT.c.run_id == row.id))}
        for r in conn.execute(
            select(SN, RI.c.role)
            .select_from(RI.join(SN, RI.c.snapshot_id == SN.c.id))
            .where(RI.c.run_id == row.id)
            .order_by(RI.c.role, SN.c.name)
        ):
            inputs.append(RunInput(snapshot=snapshot_from_row(r, row.project), role=r.role))
        artifacts = [
            RunArtifact(path=r.path, digest=r.digest, size=r.size)
            for r in conn.execute(select(RA).where(RA.c.run_id == row.id).order_by(RA.c.path))
        ]
        v, m, vr = schema.versions, schema.models, schema.version_runs
        versions = [
            f"{r.name}:{r.number}"
            for r in conn.execute(
                select(m.c.name, v.c.number)
                .select_from(vr.join(v, vr.c.version_id == v.c.id).join(m, v.c.model_id == m.c.id))
                .where(vr.c.run_id == row.id)
                .order_by(m.c.name, v.c.number)
            )
        ]
    env = record.get("environment")
    code = record.get("code")
    return Run(
        id=row.id,
        project=row.project,
        experiment=row.experiment,
        status=row.status,
        started_at=from_text(row.started_at),
        created_by=row.created_by,
        name=row.name,
        parent_id=row.parent_id,
        ended_at=from_text(row.ended_at) if row.ended_at else None,
        failure=row.failure,
        params=frozen_map(params),
        tags=frozen_map(tags),
        metrics=frozen_map(metrics),
        code=CodeRef(**code) if code else None,
        environment=(
            EnvironmentInfo(**{**env, "gpus": tuple(env.get("gpus") or ())}) if env else None
        ),
        command=tuple(record.get("command") or ()),
        host=frozen_map(record.get("host")),
        inputs=tuple(inputs),
        artifacts=tuple(artifacts),
        versions=tuple(versions),
    )


def get_run(ctx: Context, run_id: str, project: str) -> Run:
    with ctx.store.read() as conn:
        row = _run_row(conn, run_id, project)
        return _run_from(conn, row, _final_metrics(conn, [row.id])[row.id], full=True)


def run_blobs(ctx: Context, run_id: str, project: str) -> list[tuple[str, str]]:
    """Blobs the run's start record refers to (code diff, package list)."""
    with ctx.store.read() as conn:
        row = _run_row(conn, run_id, project)
    return [(str(d), str(r)) for d, r in json.loads(row.record).get("blobs") or ()]


def list_runs(
    ctx: Context,
    project: str,
    *,
    experiment: str | None = None,
    status: str | None = None,
    limit: int | None = 100,
) -> list[Run]:
    query = (
        select(R, E.c.name.label("experiment"), P.c.name.label("project"))
        .select_from(R.join(E, R.c.experiment_id == E.c.id).join(P, E.c.project_id == P.c.id))
        .where(P.c.name == project)
        .order_by(R.c.started_at.desc(), R.c.id)
    )
    if experiment is not None:
        query = query.where(E.c.name == check_name(experiment, what="experiment name"))
    if status is not None:
        if status not in ("running", *ENDED):
            raise InvalidInput(
                f"status must be running, finished, failed or killed, not {status!r}",
                field="status",
            )
        query = query.where(R.c.status == status)
    if limit is not None:
        query = query.limit(limit)
    with ctx.store.read() as conn:
        rows = conn.execute(query).all()
        finals = _final_metrics(conn, [r.id for r in rows])
        return [_run_from(conn, r, finals[r.id], full=False) for r in rows]


def metric_history(ctx: Context, run_id: str, key: str, project: str) -> list[MetricPoint]:
    check_key(key, what="metric")
    with ctx.store.read() as conn:
        row = _run_row(conn, run_id, project)
        rows = conn.execute(
            select(RM.c.step, RM.c.ts_us, RM.c.value, RM.c.special)
            .where(RM.c.run_id == row.id, RM.c.key == key)
            .order_by(RM.c.step, RM.c.id)
        ).all()
    return [
        MetricPoint(
            key=key,
            value=_value(r),
            step=r.step,
            timestamp=datetime.fromtimestamp(r.ts_us / 1e6, UTC),
        )
        for r in rows
    ]


def compare_runs(ctx: Context, run_ids: Iterable[str], project: str) -> RunComparison:
    runs = [get_run(ctx, r, project) for r in run_ids]
    if len(runs) < 2:
        raise InvalidInput("give at least two runs to compare", field="run")
    if len(runs) > LIMITS["parents_per_version"]:
        raise InvalidInput(f"compare at most {LIMITS['parents_per_version']} runs at once")
    params = {
        k: tuple(r.params.get(k) for r in runs) for k in sorted({k for r in runs for k in r.params})
    }
    metrics = {
        k: tuple(r.metrics.get(k) for r in runs)
        for k in sorted({k for r in runs for k in r.metrics})
    }
    differs = [
        k
        for k, values in (*params.items(), *metrics.items())
        if len({repr(v).encode() if _non_finite(v) else canonical_json(v) for v in values}) > 1
    ]
    return RunComparison(
        runs=tuple(r.id for r in runs),
        params=frozen_map(params),
        metrics=frozen_map(metrics),
        differs=tuple(differs),
    )


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
