"""Deployment use-cases: environments, deploying a desired state, what runs where (now or at
any past time), deployment rollback, and the blobs current deployments hold on to.

A deployment's state is an interval row holding its spec as canonical JSON; every change
closes the open interval and opens the next in one write transaction with its audit event,
and (on PostgreSQL) a NOTIFY that gateways receive when it commits.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, text, update

from ..audit import EventDraft, append
from ..canonical import canonical_json
from ..deploy import spec as specs
from ..deploy.records import (
    Deployment,
    DeploymentSpec,
    Release,
)
from ..errors import Conflict, GateFailed, InvalidInput, NotFound
from ..lifecycle import Stage
from ..limits import check_name, check_text
from ..refs import Ref, parse_ref
from ..store import schema
from ..timeutil import from_text, to_text
from . import gating
from .context import Context, ensure_project, model_row, resolve_model, version_row
from .environments import check_environment

P, M, V = schema.projects, schema.models, schema.versions
E, D, DS = schema.environments, schema.deployments, schema.deployment_states
NOTIFY_CHANNEL = "modelvault_deployments"
CONTROLLER = "modelvault-controller"


# -- reading deployments ------------------------------------------------------------------


def _state_select() -> Any:
    return select(
        DS.c.id,
        DS.c.revision,
        DS.c.spec,
        DS.c.valid_from,
        DS.c.valid_to,
        DS.c.set_by,
        DS.c.reason,
        DS.c.audit_seq,
        D.c.id.label("deployment_id"),
        D.c.environment,
        D.c.salt,
        M.c.name.label("model_name"),
        P.c.name.label("project_name"),
    ).select_from(
        DS.join(D, DS.c.deployment_id == D.c.id)
        .join(M, D.c.model_id == M.c.id)
        .join(P, D.c.project_id == P.c.id)
    )


def _held_at(at: str | None) -> Any:
    if at is None:
        return DS.c.valid_to.is_(None)
    return and_(DS.c.valid_from <= at, or_(DS.c.valid_to.is_(None), DS.c.valid_to > at))


def deployment_of(row: Any) -> Deployment:
    return Deployment(
        project=row.project_name,
        environment=row.environment,
        model=row.model_name,
        revision=row.revision,
        salt=row.salt,
        spec=specs.from_json(json.loads(row.spec)),
        valid_from=from_text(row.valid_from),
        valid_to=from_text(row.valid_to) if row.valid_to else None,
        set_by=row.set_by,
        reason=row.reason,
        audit_seq=row.audit_seq,
    )


def current_rows(
    conn: Connection, project: str | None, environment: str | None, at: str | None = None
) -> list[Any]:
    query = _state_select().where(_held_at(at))
    if project is not None:
        query = query.where(P.c.name == project)
    if environment is not None:
        query = query.where(D.c.environment == environment)
    return list(conn.execute(query.order_by(D.c.environment, M.c.name)).all())


def status(
    ctx: Context,
    *,
    environment: str | None = None,
    at: datetime | None = None,
    project: str | None = None,
    all_projects: bool = False,
) -> list[Deployment]:
    """What runs where: every deployment's state now, or at time *at*."""
    proj = None if all_projects else check_name(project or ctx.settings.project, what="project")
    with ctx.store.read() as conn:
        if environment is not None and proj is not None:
            check_environment(conn, proj, environment)
        rows = current_rows(conn, proj, environment, to_text(at) if at else None)
    return [deployment_of(r) for r in rows]


def get_deployment(ctx: Context, model: str, environment: str) -> Deployment:
    project, name = resolve_model(ctx, model)
    with ctx.store.read() as conn:
        row = _current(conn, project, environment, name)
    return deployment_of(row)


def _current(conn: Connection, project: str, environment: str, model: str) -> Any:
    row = conn.execute(
        _state_select().where(
            P.c.name == project,
            D.c.environment == environment,
            M.c.name == model,
            DS.c.valid_to.is_(None),
        )
    ).first()
    if row is None:
        check_environment(conn, project, environment)
        raise NotFound(
            f"{model} is not deployed in {environment} (project {project})",
            model=model,
            environment=environment,
        )
    return row


def history(ctx: Context, model: str, environment: str) -> list[Deployment]:
    project, name = resolve_model(ctx, model)
    with ctx.store.read() as conn:
        _current(conn, project, environment, name)
        rows = conn.execute(
            _state_select()
            .where(P.c.name == project, D.c.environment == environment, M.c.name == name)
            .order_by(DS.c.revision)
        ).all()
    return [deployment_of(r) for r in rows]


# -- resolving and checking releases ------------------------------------------------------


class Resolver:
    """Resolves release references of one deployment's model inside a transaction."""

    def __init__(self, conn: Connection, ctx: Context, project: str, model: str) -> None:
        self.conn, self.ctx, self.project, self.model = conn, ctx, project, model
        self.rows: dict[Release, tuple[Any, Any | None]] = {}

    def _row(self, text_: str, what: str) -> Any:
        ref = (
            Ref(self.project, self.model, number=int(text_))
            if text_.strip().isdigit()
            else parse_ref(text_)
        )
        if ref.project is None:
            ref = replace(ref, project=self.project)
        try:
            row = version_row(self.conn, self.ctx, ref)
        except NotFound:
            raise NotFound(
                f"unknown release {text_}: no such version of {self.project}/{ref.model}",
                ref=text_,
            ) from None
        if row.project_name != self.project:
            raise InvalidInput(f"{what} {text_} is in another project", field="release")
        if row.stage == Stage.RETIRED.value:
            raise Conflict(
                f"{row.model_name}:{row.number} is retired and cannot be deployed",
                model=row.model_name,
                version=row.number,
            )
        return row

    def __call__(self, text_: str, config: str | None) -> Release:
        row = self._row(text_, "release")
        if row.model_name != self.model:
            raise InvalidInput(
                f"release {text_} is a version of {row.model_name}, not of {self.model}",
                field="release",
            )
        if row.kind == "system":
            raise InvalidInput(f"{text_} is a system version; deploy a model", field="release")
        crow = None
        if config is not None:
            if row.kind != "model":
                raise InvalidInput(
                    f"{text_} is a config; only a model takes --config", field="config"
                )
            crow = self._row(config, "config")
            if crow.kind != "config":
                raise InvalidInput(f"{config} is not a config version", field="config")
        release = Release(
            row.model_name,
            row.number,
            crow.model_name if crow is not None else None,
            crow.number if crow is not None else None,
        )
        self.rows[release] = (row, crow)
        return release


def _serving(spec: DeploymentSpec) -> set[Release]:
    """Releases that answer users (shadows and preview routes do not)."""
    out = {a.release for a in spec.arms if a.weight > 0}
    out |= {s.release for s in spec.segments} | {f.release for f in spec.features}
    if spec.rollout is not None and spec.rollout.status != "aborted":
        out.add(spec.rollout.candidate)
    return out


def _check_production_gate(conn: Connection, ctx: Context, row: Any) -> None:
    """A release entering production traffic must be able to enter the production stage."""
    if row.stage == Stage.PRODUCTION.value:
        return
    if row.stage == Stage.DEVELOPMENT.value:
        raise Conflict(
            f"{row.model_name}:{row.number} is in development; promote it to staging before "
            "it takes production traffic",
            model=row.model_name,
            version=row.number,
        )
    report = gating.evaluate(conn, ctx, row, Stage.PRODUCTION)
    failed = [c for c in report.checks if not c.passed]
    if failed:
        from dataclasses import asdict

        listed = "; ".join(f"{c.rule} (actual {c.actual})" for c in failed)
        raise GateFailed(
            f"{row.model_name}:{row.number} cannot take production traffic, failed: {listed}",
            model=row.model_name,
            version=row.number,
            stage="production",
            rules=[asdict(c) for c in report.checks],
        )


def check_new_releases(
    conn: Connection,
    ctx: Context,
    resolver: Resolver,
    environment: str,
    spec: DeploymentSpec,
    current: DeploymentSpec | None,
) -> list[Release]:
    """Gates for releases newly taking production traffic; returns the releases that are new
    to the deployment (the caller proves they load before any traffic moves)."""
    before = set(current.releases()) if current else set()
    if environment == "production":
        for release in _serving(spec) - (_serving(current) if current else set()):
            row, _ = resolver.rows.get(release) or (None, None)
            if row is None:
                row = resolver._row(f"{release.model}:{release.version}", "release")
            _check_production_gate(conn, ctx, row)
    return [r for r in spec.releases() if r not in before]


# -- writing ------------------------------------------------------------------------------


def _deployment_id(
    conn: Connection, ctx: Context, project: str, environment: str, model: str, at: datetime
) -> tuple[int, Any | None]:
    """The deployment's id (created on first deploy) and its open state row, if any."""
    mrow = model_row(conn, project, model)
    project_id = ensure_project(conn, ctx, project, at)
    dep_id = conn.execute(
        select(D.c.id).where(
            D.c.project_id == project_id, D.c.environment == environment, D.c.model_id == mrow.id
        )
    ).scalar()
    if dep_id is None:
        dep_id = conn.execute(
            insert(D)
            .values(
                project_id=project_id,
                environment=environment,
                model_id=mrow.id,
                salt=secrets.token_hex(8),
                created_by=ctx.actor,
                created_at=to_text(at),
            )
            .returning(D.c.id)
        ).scalar_one()
        return int(dep_id), None
    row = conn.execute(_state_select().where(D.c.id == dep_id, DS.c.valid_to.is_(None))).first()
    return int(dep_id), row


def summary(spec: DeploymentSpec) -> dict[str, Any]:
    """The audit form of a spec: arms with weights, and what else routes traffic."""
    out: dict[str, Any] = {"arms": {a.release.key: a.weight for a in spec.arms}}
    if spec.rollout is not None:
        plan = spec.rollout
        out["rollout"] = {
            "candidate": plan.candidate.key,
            "stable": plan.stable.key,
            "step": plan.step,
            "steps": list(plan.steps),
            "status": plan.status,
        }
    if spec.shadows:
        out["shadows"] = {s.release.key: s.sample for s in spec.shadows}
    if spec.segments:
        out["segments"] = [s.release.key for s in spec.segments]
    if spec.features:
        out["features"] = {f.feature: f.release.key for f in spec.features}
    if spec.sticky:
        out["sticky"] = spec.sticky
    if spec.standby:
        out["standby"] = spec.standby.release.key
    if spec.preview:
        out["preview"] = spec.preview.key
    return out


def write_state(
    conn: Connection,
    ctx: Context,
    *,
    project: str,
    environment: str,
    model: str,
    dep_id: int,
    current: Any | None,
    spec: DeploymentSpec,
    at: datetime,
    action: str,
    reason: str | None,
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Close the open state, open the next, append the audit event, notify gateways."""
    at_text = to_text(at)
    before = summary(specs.from_json(json.loads(current.spec))) if current is not None else None
    after = {**summary(spec), **(extra or {})}
    revision = (current.revision if current is not None else 0) + 1
    event = append(
        conn,
        EventDraft(
            action,
            f"{project}/{environment}/{model}",
            project=project,
            model=model,
            before={"revision": revision - 1, **before} if before is not None else None,
            after={"revision": revision, "environment": environment, **after},
            reason=reason,
        ),
        actor=ctx.actor,
        at=at,
    )
    if current is not None:
        closed = conn.execute(
            update(DS)
            .where(DS.c.id == current.id, DS.c.valid_to.is_(None))
            .values(valid_to=at_text)
        )
        if closed.rowcount != 1:
            raise Conflict(f"the deployment of {model} in {environment} changed; try again")
    conn.execute(
        insert(DS).values(
            deployment_id=dep_id,
            revision=revision,
            spec=canonical_json(specs.to_json(spec)).decode(),
            valid_from=at_text,
            set_by=ctx.actor,
            reason=reason,
            audit_seq=event.seq,
        )
    )
    if ctx.store.dialect == "postgresql":
        # delivered when (and only if) the transaction commits
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": f"{project}/{environment}/{model}"},
        )
    return revision


def sync_registry_stage(
    conn: Connection,
    ctx: Context,
    project: str,
    environment: str,
    spec: DeploymentSpec,
    reason: str,
) -> None:
    """In production, a release serving all traffic holds the registry's production stage
    (promoted through its gate, which the caller has checked)."""
    if environment != "production" or len(spec.arms) != 1 or spec.segments or spec.features:
        return
    if spec.rollout is not None and spec.rollout.status != "complete":
        return
    from .stages import promote_in

    release = spec.arms[0].release
    ref = Ref(project, release.model, number=release.version)
    row = version_row(conn, ctx, ref)
    if row.stage != Stage.PRODUCTION.value:
        promote_in(conn, ctx, ref, Stage.PRODUCTION, reason, False)


def build_document(
    release: str | None = None,
    *,
    config: str | None = None,
    canary: str | None = None,
    bake: str | None = None,
    shadow: str | None = None,
    sample: float | None = None,
    sticky: str | None = None,
    guardrails: tuple[str, ...] = (),
    preview: bool = False,
    current: Deployment | None = None,
) -> dict[str, Any]:
    """The spec document the ``deploy`` command's options describe.

    Without ``--canary`` the release takes all traffic at once; with ``--preview`` it takes
    none and answers only requests carrying ``X-Model-Preview: 1`` (blue-green)."""
    doc: dict[str, Any] = {}
    if sticky is not None:
        doc["sticky"] = sticky
    elif current is not None and current.spec.sticky:
        doc["sticky"] = current.spec.sticky
    if shadow is not None:
        doc["shadows"] = [{"release": shadow, "sample": 1.0 if sample is None else sample}]
    elif sample is not None:
        raise InvalidInput("--sample needs --shadow", field="sample")
    if guardrails:
        doc["guardrails"] = list(guardrails)
    if release is None:
        raise InvalidInput("give a release to deploy (MODEL:N) or -f SPEC", field="release")
    target: dict[str, Any] = {"release": release}
    if config is not None:
        target["config"] = config
    if preview:
        if canary is not None:
            raise InvalidInput("--preview and --canary do not combine", field="preview")
        if current is None:
            raise InvalidInput("--preview needs a deployment already serving", field="preview")
        doc["arms"] = [
            {"release": _ref(a.release), "config": _config_ref(a.release), "weight": a.weight}
            for a in current.spec.arms
        ]
        for arm in doc["arms"]:
            if arm["config"] is None:
                del arm["config"]
        doc["preview"] = target
        return doc
    if canary is not None or bake is not None:
        doc["rollout"] = {**target, "steps": canary or "1,5,25,50,100", "bake": bake or "10m"}
        doc.setdefault("guardrails", ["error_rate > 2x baseline"])
    else:
        doc.update(target)
    return doc


def _ref(release: Release) -> str:
    return f"{release.model}:{release.version}"


def _config_ref(release: Release) -> str | None:
    if release.config_model is None:
        return None
    return f"{release.config_model}:{release.config_version}"


def deploy(
    ctx: Context,
    model: str,
    environment: str,
    document: Mapping[str, Any],
    reason: str | None = None,
    *,
    expect_revision: int | None = None,
) -> Deployment:
    """Make *document* (docs/rollout.md) the desired state of *model* in *environment*.

    Every release new to the deployment is loaded through its flavor first (digests
    verified): one that cannot load is refused before any traffic moves."""
    reason = check_text(reason.strip() if reason else None, limit="reason_chars", what="reason")
    project, name = resolve_model(ctx, model)
    # First pass, read-only: resolve and check, then prove new releases load, outside the
    # writers' lock (loading can take a while).
    with ctx.store.read() as conn:
        environment = check_environment(conn, project, environment)
        _, spec, current_spec = _prepare(conn, ctx, project, environment, name, document, ctx.now())
    from .releases import trial_load

    serving = set(current_spec.releases()) if current_spec is not None else set()
    for release in spec.releases():
        if release not in serving:
            trial_load(ctx, project, release)
    with ctx.store.write() as conn:
        at = ctx.now()
        dep_id, current = _prepare_ids(conn, ctx, project, environment, name, at)
        if expect_revision is not None and (current.revision if current else 0) != expect_revision:
            raise Conflict(
                f"the deployment of {name} in {environment} is at revision "
                f"{current.revision if current else 0}, not {expect_revision}",
                model=name,
                environment=environment,
            )
        resolver, spec, cur_spec = _prepare(conn, ctx, project, environment, name, document, at)
        check_new_releases(conn, ctx, resolver, environment, spec, cur_spec)
        write_state(
            conn,
            ctx,
            project=project,
            environment=environment,
            model=name,
            dep_id=dep_id,
            current=current,
            spec=spec,
            at=at,
            action="deployment.apply",
            reason=reason,
        )
        sync_registry_stage(
            conn, ctx, project, environment, spec, reason or f"deployed to {environment}"
        )
        row = _current(conn, project, environment, name)
    return deployment_of(row)


def _prepare_ids(
    conn: Connection, ctx: Context, project: str, environment: str, model: str, at: datetime
) -> tuple[int, Any | None]:
    return _deployment_id(conn, ctx, project, environment, model, at)


def _prepare(
    conn: Connection,
    ctx: Context,
    project: str,
    environment: str,
    model: str,
    document: Mapping[str, Any],
    at: datetime,
) -> tuple[Resolver, DeploymentSpec, DeploymentSpec | None]:
    model_row(conn, project, model)
    doc_model = document.get("model")
    if doc_model is not None and doc_model != model:
        raise InvalidInput(f"the spec is for model {doc_model!r}, not {model!r}", field="model")
    doc_env = document.get("environment")
    if doc_env is not None and doc_env != environment:
        raise InvalidInput(f"the spec is for {doc_env!r}, not {environment!r}", field="environment")
    row = conn.execute(
        _state_select().where(
            P.c.name == project,
            D.c.environment == environment,
            M.c.name == model,
            DS.c.valid_to.is_(None),
        )
    ).first()
    current = specs.from_json(json.loads(row.spec)) if row is not None else None
    resolver = Resolver(conn, ctx, project, model)
    spec = specs.parse_document(document, resolver, current=current, now_text=to_text(at))
    return resolver, spec, current


# -- what deployments hold on to ----------------------------------------------------------


def deployment_roots(ctx: Context) -> set[str]:
    """Digests of every blob a current deployment needs (manifests and files of every
    release it references: arms, shadows, standby, preview, segment and feature routes).
    For garbage collection: none of these may be deleted."""
    roots: set[str] = set()
    with ctx.store.read() as conn:
        for row in current_rows(conn, None, None):
            spec = specs.from_json(json.loads(row.spec))
            for release in spec.releases():
                pairs = [(release.model, release.version)]
                if release.config_model is not None and release.config_version is not None:
                    pairs.append((release.config_model, release.config_version))
                for model, number in pairs:
                    vid = conn.execute(
                        select(V.c.id, V.c.artifact_digest)
                        .select_from(V.join(M, V.c.model_id == M.c.id))
                        .where(
                            M.c.project_id
                            == select(D.c.project_id)
                            .where(D.c.id == row.deployment_id)
                            .scalar_subquery(),
                            M.c.name == model,
                            V.c.number == number,
                        )
                    ).first()
                    if vid is None:
                        continue
                    roots.add(vid.artifact_digest)
                    roots.update(
                        conn.execute(
                            select(schema.version_blobs.c.digest).where(
                                schema.version_blobs.c.version_id == vid.id
                            )
                        ).scalars()
                    )
    return roots
