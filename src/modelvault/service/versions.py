"""Registering versions and reading them back.

Registration checks every input first, stores the bytes (write-once blobs), then writes the
version, its search rows, its first stage interval and its audit event in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from ..audit import EventDraft, append
from ..canonical import canonical_json, sha256_digest
from ..capture import capture
from ..configs import check_config, read_config
from ..datasets import parse_dataset
from ..domain import CodeRef, DatasetRef, EnvironmentInfo, Manifest, Model, Version
from ..errors import AlreadyExists, Conflict, IntegrityError, InvalidInput, NotFound
from ..lifecycle import Stage
from ..limits import (
    LIMITS,
    check_metrics,
    check_name,
    check_params,
    check_semver,
    check_tags,
    check_text,
)
from ..manifest import manifest_bytes, scan, stage_files
from ..refs import Ref
from ..store import lean, schema
from ..store import statements as sql
from ..timeutil import from_text, to_text
from . import inlineblobs
from .context import Context, ensure_project, model_row, version_query, version_row
from .records import make_record, version_from_row

KINDS = ("model", "config", "system")
FLAVORS = {".skops": "sklearn", ".onnx": "onnx"}
Progress = Callable[[int], None]


@dataclass(slots=True)
class RegisterRequest:
    model: str
    path: Path | None
    kind: str = "model"
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    datasets: Sequence[str | DatasetRef] = ()
    parents: Sequence[str] = ()
    components: Sequence[str] = ()
    label: str | None = None
    description: str | None = None
    config: Mapping[str, Any] | None = None
    feature_pipeline: str | None = None
    inference_config: str | None = None
    flavor: str | None = None
    seed: int | None = None
    capture_code: bool = True
    capture_environment: bool = True
    code_dir: Path | None = None
    progress: Callable[[int], Progress | None] | None = None
    # Registering from a run: what the run captured replaces capture now, and the run is linked.
    code: CodeRef | None = None
    environment: EnvironmentInfo | None = None
    extra_blobs: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    # Registering bytes a client already uploaded (server mode): the manifest names them all.
    manifest: Manifest | None = None
    # Small blobs it sent inside the registration (checked against their digests): stored
    # in the metadata store by the version's own transaction (service/inlineblobs.py).
    inline: Mapping[str, bytes] = field(default_factory=dict)
    # Pushing a version registered offline (sync push): its number, time, author and digest.
    imported: Imported | None = None


@dataclass(frozen=True, slots=True)
class Imported:
    """The identity a version had where it was registered first; kept exactly, so the
    version's digest is the same on both sides."""

    number: int
    created_at: datetime
    created_by: str
    digest: str


def _pin(ctx: Context, conn: Connection, text: str) -> tuple[str, int]:
    """Resolve a reference now and pin it to an exact PROJECT/MODEL:N."""
    ref = ctx.ref(text)
    row = version_row(conn, ctx, ref)
    return f"{row.project_name}/{row.model_name}:{row.number}", row.id


def _validate(req: RegisterRequest) -> None:
    check_name(req.model)
    if req.kind not in KINDS:
        raise InvalidInput(f"unknown kind {req.kind!r}: use model, config or system", field="kind")
    check_text(req.description, limit="description_chars", what="description")
    if req.label is not None:
        check_semver(req.label)
    for name, items, limit in (
        ("dataset", req.datasets, "datasets_per_version"),
        ("parent", req.parents, "parents_per_version"),
        ("component", req.components, "components_per_version"),
    ):
        if len(items) > LIMITS[limit]:
            raise InvalidInput(f"too many {name}s (limit {LIMITS[limit]})", field=name)
    if req.kind == "system" and not req.components:
        raise InvalidInput("a system version must pin at least one component", field="component")
    if req.kind != "system" and req.components:
        raise InvalidInput("only system versions pin components", field="component")
    if req.kind == "model" and req.path is None and req.manifest is None:
        raise InvalidInput("a model version needs a PATH to its files", field="path")
    if req.kind == "config" and req.path is None and req.config is None:
        raise InvalidInput("a config version needs a config file or mapping", field="config")
    if req.seed is not None and (isinstance(req.seed, bool) or not isinstance(req.seed, int)):
        raise InvalidInput("seed must be a whole number", field="seed")
    if req.flavor is not None and req.flavor not in {*FLAVORS.values(), "python", "pickle"}:
        raise InvalidInput(
            f"unknown flavor {req.flavor!r}: use sklearn, onnx, python or pickle", field="flavor"
        )
    for value, what in (
        (req.feature_pipeline, "feature pipeline"),
        (req.inference_config, "inference config"),
    ):
        check_text(value, limit="reference_chars", what=what)


def _detect_flavor(manifest: Manifest) -> str | None:
    found = {FLAVORS[s] for f in manifest.files for s in FLAVORS if f.path.endswith(s)}
    return found.pop() if len(found) == 1 else None


def _ensure_model(
    conn: Connection, ctx: Context, project: str, model: str, kind: str, at: datetime
) -> int:
    # one statement when the model exists (the common case), its project with it
    found = lean.run(conn, sql.MODEL_ID_AND_KIND, {"project": project, "model": model}).first()
    if found is None:
        project_id = ensure_project(conn, ctx, project, at)
        model_id = conn.execute(
            sql.INSERT_MODEL,
            {
                "project_id": project_id,
                "name": model,
                "latest_number": 0,
                "created_by": ctx.actor,
                "created_at": to_text(at),
            },
        ).scalar_one()
        append(
            conn,
            EventDraft(
                "model.create",
                f"{project}/{model}",
                project=project,
                model=model,
                after={"model": model},
            ),
            actor=ctx.actor,
            at=at,
        )
        return int(model_id)
    if found.kind is not None and found.kind != kind:
        raise InvalidInput(
            f"model {project}/{model} holds {found.kind} versions; cannot add a {kind} version",
            field="kind",
        )
    return int(found.id)


def register(ctx: Context, req: RegisterRequest, project: str | None = None) -> Version:
    project = check_name(project or ctx.settings.project, what="project name")
    _validate(req)
    params = check_params(req.params)
    metrics = check_metrics(req.metrics)
    tags = check_tags(req.tags)
    config: dict[str, Any] | None = None
    if req.kind == "config":
        config = (
            read_config(req.path)
            if req.path and req.config is None
            else check_config(dict(req.config or {}))
        )
    # every path problem is reported before a byte is stored
    scanned = scan(req.path) if req.path is not None else None
    parents: list[tuple[str, int]] = []
    components: list[tuple[str, int]] = []
    inference_config = None
    if req.parents or req.components or req.inference_config or req.label:
        with ctx.store.read() as conn:
            parents = [_pin(ctx, conn, p) for p in req.parents]
            components = [_pin(ctx, conn, c) for c in req.components]
            if req.inference_config is not None:
                row = version_row(conn, ctx, ctx.ref(req.inference_config))
                if row.kind != "config":
                    raise InvalidInput(
                        f"inference config {req.inference_config} is not a config version",
                        field="inference_config",
                    )
                inference_config = f"{row.project_name}/{row.model_name}:{row.number}"
            if req.label is not None:
                _check_label_free(conn, project, req.model, req.label)
    for d in req.datasets:  # every reference is checked before any snapshot is stored
        if not isinstance(d, DatasetRef):
            parse_dataset(d, None)
    datasets = [
        d if isinstance(d, DatasetRef) else parse_dataset(d, ctx.blobs) for d in req.datasets
    ]

    # Bytes first: blobs are write-once and harmless if the transaction below never commits.
    blob_roles: list[tuple[str, str]] = []
    inline: Mapping[str, bytes] = req.inline
    if scanned is not None:
        progress = req.progress(sum(f.size for f in scanned)) if req.progress else None
        # small files are kept with the record, as the server keeps those sent inline
        most = inlineblobs.inline_limit(ctx.settings.inline_blob_max)
        manifest, kept = stage_files(scanned, ctx.blobs, most, progress)
        inline = {**inline, **kept}
    elif req.manifest is not None:
        manifest = req.manifest
        named = [f.digest for f in manifest.files] + [d for d, _ in req.extra_blobs]
        _check_uploaded(ctx, [d for d in named if d not in req.inline])
    else:
        body = manifest_bytes([])
        manifest = Manifest(digest=ctx.blobs.put_bytes(body).digest, files=())
    blob_roles.append((manifest.digest, "manifest"))
    blob_roles.extend((f.digest, "file") for f in manifest.files)
    code, env, extra = capture(
        ctx.blobs,
        code_dir=req.code_dir,
        seed=req.seed,
        code=req.capture_code and req.code is None,
        environment=req.capture_environment and req.environment is None,
    )
    code, env = req.code or code, req.environment or env
    extra += req.extra_blobs
    blob_roles.extend(extra)
    flavor = req.flavor or _detect_flavor(manifest)
    ctx.blobs.sync()  # every blob name durable before the metadata that refers to it

    with ctx.store.write() as conn:
        at = ctx.now()  # under the write lock, so time order is commit order
        model_id = _ensure_model(conn, ctx, project, req.model, req.kind, at)
        if req.imported is not None:
            same = _imported_already(conn, ctx, project, req, model_id)
            if same is not None:
                return same
        number = lean.run(conn, sql.BUMP_NUMBER, {"model_id": model_id}).scalar_one()
        created_at, created_by = at, ctx.actor
        if req.imported is not None:
            created_at, created_by = req.imported.created_at, req.imported.created_by
        if req.label is not None:
            _check_label_free(conn, project, req.model, req.label)
        record = make_record(
            project=project,
            model=req.model,
            number=number,
            kind=req.kind,
            label=req.label,
            artifact_digest=manifest.digest,
            size=manifest.total_size,
            file_count=len(manifest.files),
            params=params,
            metrics=metrics,
            tags=tags,
            datasets=datasets,
            code=code,
            environment=env,
            parents=[p for p, _ in parents],
            components=[c for c, _ in components],
            config=config,
            feature_pipeline=req.feature_pipeline,
            inference_config=inference_config,
            description=req.description,
            flavor=flavor,
            created_by=created_by,
            created_at=to_text(created_at),
            run=req.run_id,
        )
        body = canonical_json(record)
        digest = sha256_digest(body)
        if req.imported is not None and digest != req.imported.digest:
            raise IntegrityError(
                f"{project}/{req.model}:{number} does not hash to {req.imported.digest} here "
                f"(it hashes to {digest}): the pushed record differs from the original",
                digest=req.imported.digest,
            )
        version_id = lean.run(
            conn,
            sql.INSERT_VERSION,
            {
                "model_id": model_id,
                "number": number,
                "label": req.label,
                "kind": req.kind,
                "digest": digest,
                "artifact_digest": manifest.digest,
                "size": manifest.total_size,
                "file_count": len(manifest.files),
                "record": body.decode("utf-8"),
                "created_by": created_by,
                "created_at": to_text(created_at),
            },
        ).scalar_one()
        _write_search_rows(conn, version_id, params, metrics, tags)
        inlineblobs.insert(conn, inline, to_text(at))
        if req.run_id is not None and (req.imported is None or _run_exists(conn, req.run_id)):
            _link_run(conn, version_id, req.run_id, project)
        links = [(pid, "parent") for _, pid in parents] + [
            (cid, "component") for _, cid in components
        ]
        if links:
            conn.execute(
                sql.INSERT_PARENTS,
                [
                    {"version_id": version_id, "parent_id": pid, "relation": rel}
                    for pid, rel in dict.fromkeys(links)
                ],
            )
        roles = dict(reversed(blob_roles))
        lean.run_many(
            conn,
            sql.INSERT_BLOBS,
            [{"version_id": version_id, "digest": d, "role": r} for d, r in roles.items()],
        )
        event = append(
            conn,
            EventDraft(
                "version.register",
                f"{project}/{req.model}:{number}",
                project=project,
                model=req.model,
                after={
                    "number": number,
                    "digest": digest,
                    "artifact_digest": manifest.digest,
                    "kind": req.kind,
                    "label": req.label,
                    "stage": Stage.DEVELOPMENT.value,
                    **({"run": req.run_id} if req.run_id else {}),
                    **(
                        {
                            "pushed": True,
                            "created_by": created_by,
                            "created_at": to_text(created_at),
                        }
                        if req.imported is not None
                        else {}
                    ),
                },
            ),
            actor=ctx.actor,
            at=at,
        )
        lean.run(
            conn,
            sql.INSERT_STAGE,
            {
                "model_id": model_id,
                "version_id": version_id,
                "stage": Stage.DEVELOPMENT.value,
                "valid_from": to_text(created_at),
                "set_by": created_by,
                "reason": None,
                "audit_seq": event.seq,
            },
        )
    return Version(
        project=project,
        model=req.model,
        number=number,
        kind=req.kind,
        digest=digest,
        artifact_digest=manifest.digest,
        created_by=created_by,
        created_at=created_at,
        stage=Stage.DEVELOPMENT.value,
        label=req.label,
        size=manifest.total_size,
        file_count=len(manifest.files),
        params=params,
        metrics=metrics,
        tags=tags,
        datasets=tuple(datasets),
        code=code,
        environment=env,
        parents=tuple(p for p, _ in parents),
        components=tuple(c for c, _ in components),
        config=config,
        feature_pipeline=req.feature_pipeline,
        inference_config=inference_config,
        description=req.description,
        flavor=flavor,
        run_id=req.run_id,
    )


def _imported_already(
    conn: Connection, ctx: Context, project: str, req: RegisterRequest, model_id: int
) -> Version | None:
    """The version when this push happened before; a clear error when the number is taken
    by another version or an earlier one has not been pushed yet."""
    assert req.imported is not None
    number = req.imported.number
    found = conn.execute(
        select(schema.versions.c.digest).where(
            schema.versions.c.model_id == model_id, schema.versions.c.number == number
        )
    ).scalar()
    if found == req.imported.digest:
        return version_from_row(version_row(conn, ctx, Ref(project, req.model, number=number)))
    if found is not None:
        raise Conflict(
            f"{project}/{req.model}:{number} is another version here; a version registered "
            "offline can be pushed only while its number is free",
            model=req.model,
            version=number,
        )
    latest = conn.execute(
        select(schema.models.c.latest_number).where(schema.models.c.id == model_id)
    ).scalar_one()
    if number != latest + 1:
        raise Conflict(
            f"cannot push {project}/{req.model}:{number}: the next number here is {latest + 1}"
            + (" (push the earlier versions first)" if number > latest + 1 else ""),
            model=req.model,
            version=number,
        )
    return None


def _run_exists(conn: Connection, run_id: str) -> bool:
    return (
        conn.execute(select(schema.runs.c.id).where(schema.runs.c.id == run_id)).first() is not None
    )


def _check_uploaded(ctx: Context, digests: list[str]) -> None:
    missing = [d for d in dict.fromkeys(digests) if not ctx.blobs.exists(d)]
    if missing:
        raise NotFound(
            f"{len(missing)} blob(s) the version names are not uploaded (first: {missing[0]})",
            digest=missing[0],
        )


def _link_run(conn: Connection, version_id: int, run_id: str, project: str) -> None:
    r, e, p = schema.runs, schema.experiments, schema.projects
    found = conn.execute(
        select(p.c.name)
        .select_from(r.join(e, r.c.experiment_id == e.c.id).join(p, e.c.project_id == p.c.id))
        .where(r.c.id == run_id)
    ).scalar()
    if found is None:
        raise NotFound(f"run {run_id} does not exist", run=run_id)
    if found != project:
        raise InvalidInput(
            f"run {run_id} belongs to project {found}, not {project}", field="run", run=run_id
        )
    conn.execute(insert(schema.version_runs).values(version_id=version_id, run_id=run_id))


def _check_label_free(conn: Connection, project: str, model: str, label: str) -> None:
    v, m, p = schema.versions, schema.models, schema.projects
    taken = conn.execute(
        select(v.c.number)
        .select_from(v.join(m, v.c.model_id == m.c.id).join(p, m.c.project_id == p.c.id))
        .where(p.c.name == project, m.c.name == model, v.c.label == label)
    ).scalar()
    if taken is not None:
        raise AlreadyExists(
            f"label {label} is already {model}:{taken}", model=model, label=label, version=taken
        )


# PostgreSQL: the three tables in one statement, each from arrays (one round trip, and the
# driver converts six lists instead of a hundred values)
_PG_SEARCH_ROWS = f"""
WITH p AS (
  INSERT INTO {schema.version_params.name} (version_id, key, value_text, value_num)
  SELECT %(v)s, k, t, n FROM unnest(%(pk)s::text[], %(pt)s::text[], %(pn)s::float8[]) AS u(k, t, n)
), m AS (
  INSERT INTO {schema.version_metrics.name} (version_id, key, value)
  SELECT %(v)s, k, x FROM unnest(%(mk)s::text[], %(mx)s::float8[]) AS u(k, x)
)
INSERT INTO {schema.version_tags.name} (version_id, key, value)
SELECT %(v)s, k, x FROM unnest(%(tk)s::text[], %(tx)s::text[]) AS u(k, x)
"""

_SQLITE_PARAMS = (
    f"INSERT INTO {schema.version_params.name} (version_id, key, value_text, value_num) "
    "VALUES (?, ?, ?, ?)"
)
_SQLITE_METRICS = (
    f"INSERT INTO {schema.version_metrics.name} (version_id, key, value) VALUES (?, ?, ?)"
)
_SQLITE_TAGS = f"INSERT INTO {schema.version_tags.name} (version_id, key, value) VALUES (?, ?, ?)"


def _write_search_rows(
    conn: Connection,
    version_id: int,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            _PG_SEARCH_ROWS,
            {
                "v": version_id,
                "pk": list(params),
                "pt": [_param_text(v) for v in params.values()],
                "pn": [_param_num(v) for v in params.values()],
                "mk": list(metrics),
                "mx": list(metrics.values()),
                "tk": list(tags),
                "tx": list(tags.values()),
            },
        )
        return
    # SQLite: the driver's executemany with plain tuples (a third of the CPU of the same rows
    # as dictionaries through a compiled insert)
    if params:
        conn.exec_driver_sql(
            _SQLITE_PARAMS,
            [(version_id, k, _param_text(v), _param_num(v)) for k, v in params.items()],
        )
    if metrics:
        conn.exec_driver_sql(_SQLITE_METRICS, [(version_id, k, v) for k, v in metrics.items()])
    if tags:
        conn.exec_driver_sql(_SQLITE_TAGS, [(version_id, k, v) for k, v in tags.items()])


def _param_num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _param_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def get(ctx: Context, ref: str, at: datetime | None = None) -> Version:
    parsed = ctx.ref(ref)
    with ctx.store.read(snapshot=False) as conn:
        row = version_row(conn, ctx, parsed, at)
    return version_from_row(row)


def list_versions(ctx: Context, model: str, project: str | None = None) -> list[Version]:
    project = check_name(project or ctx.settings.project, what="project name")
    check_name(model)
    with ctx.store.read() as conn:
        model_row(conn, project, model)
        query, params = version_query(Ref(project, model), project, None)
        query = query.limit(None).order_by(None).order_by(schema.versions.c.number)
        rows = conn.execute(query, params).all()
    return [version_from_row(r) for r in rows]


def list_models(ctx: Context, project: str | None = None) -> list[Model]:
    project = check_name(project or ctx.settings.project, what="project name")
    m, p, s, v = schema.models, schema.projects, schema.stage_intervals, schema.versions
    prod = (
        select(v.c.number)
        .select_from(s.join(v, s.c.version_id == v.c.id))
        .where(s.c.model_id == m.c.id, s.c.stage == "production", s.c.valid_to.is_(None))
        .scalar_subquery()
    )
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(
                m.c.name,
                m.c.created_by,
                m.c.created_at,
                m.c.latest_number,
                prod.label("production"),
            )
            .select_from(m.join(p, m.c.project_id == p.c.id))
            .where(p.c.name == project)
            .order_by(m.c.name)
        ).all()
    return [
        Model(
            project=project,
            name=r.name,
            created_by=r.created_by,
            created_at=from_text(r.created_at),
            latest_version=r.latest_number,
            production_version=r.production,
        )
        for r in rows
    ]
