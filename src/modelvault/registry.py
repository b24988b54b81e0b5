"""``Registry``: the one interface to modelvault. The CLI calls it and nothing else.

In local mode it runs the service layer in process over the embedded stores chosen by
settings (SQLite file and a local blob directory by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .deploy.sdk import DeploymentMethods
from .domain import (
    AliasInterval,
    Approval,
    AuditEvent,
    AuditVerification,
    DatasetRef,
    Manifest,
    Model,
    PullResult,
    SchemaStatus,
    StageInterval,
    Transition,
    Version,
    VersionDiff,
)
from .errors import NotFound
from .events.sdk import EventsMethods
from .settings import Settings
from .timeutil import Clock, parse_time, utc_now
from .tracking.sdk import TrackingMethods

if TYPE_CHECKING:
    from .service.aliases import Expect

ProgressFactory = Callable[[int], Callable[[int], None] | None]


def _is_remote(home: str | Path | None, settings: Settings | None) -> bool:
    if isinstance(home, str) and home.startswith(("http://", "https://")):
        return True
    return settings is None and bool(Settings.from_env().url)


class Registry(TrackingMethods, EventsMethods, DeploymentMethods):
    """A model registry. ``Registry()`` opens the embedded default at ``$MODELVAULT_HOME``;
    ``Registry("http://host:7310", token=...)`` (or ``$MODELVAULT_URL``) talks to a server
    with the same methods and return types."""

    def __new__(cls, home: str | Path | None = None, *args: Any, **kwargs: Any) -> Registry:
        if cls is Registry and _is_remote(home, kwargs.get("settings")):
            from .remote import RemoteRegistry

            return RemoteRegistry.__new__(RemoteRegistry)
        return super().__new__(cls)

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        settings: Settings | None = None,
        actor: str | None = None,
        project: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        from .blobs import open_blob_store
        from .service.context import Context, check_actor
        from .service.inlineblobs import InlineBlobs
        from .store.engine import open_metadata_store

        base = settings or (Settings.from_env(home=Path(home)) if home else Settings.from_env())
        overrides: dict[str, Any] = {}
        if actor is not None:
            overrides["actor"] = check_actor(actor)
        if project is not None:
            from .limits import check_name

            overrides["project"] = check_name(project, what="project name")
        if overrides:
            from dataclasses import replace

            base = replace(base, **overrides)
        self.settings = base
        store = open_metadata_store(base.db, base)
        self._ctx = Context(
            settings=base,
            store=store,
            blobs=InlineBlobs(open_blob_store(base.blobs, base), store),
            clock=clock or utc_now,
            actor=check_actor(base.actor),
        )
        self._auto_checkpoint: Any = None
        self._ctx.store.after_write.append(self._after_write)

    def _acting_as(self, actor: str, project: str | None = None) -> Registry:
        """This registry over the same stores, acting as *actor*, with references that name
        no project read in *project* (the server, per request)."""
        from dataclasses import replace

        clone = object.__new__(type(self))
        clone.settings = replace(self.settings, project=project) if project else self.settings
        clone._ctx = replace(self._ctx, actor=actor, settings=clone.settings)
        clone._auto_checkpoint = None
        return clone

    def _after_write(self, head: int | None) -> None:
        """Sign an audit checkpoint when one is due (docs/audit.md); never fails the write."""
        if self._auto_checkpoint is None:
            from .service.autocheckpoint import AutoCheckpoint

            self._auto_checkpoint = AutoCheckpoint(self._ctx)
        self._auto_checkpoint(head)

    # -- lifecycle of the store -------------------------------------------------------------
    def init(self) -> dict[str, str]:
        """Create the store if needed; returns where things live."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self._ctx.store.ensure_schema()
        return {
            "home": str(self.settings.home),
            "db": self._ctx.store.display_url,
            "blobs": self.settings.blobs,
            "policy": str(self.settings.policy),
        }

    def upgrade_schema(self) -> SchemaStatus:
        """Migrate the metadata database to this release's schema (a no-op when it is there);
        several processes doing so at once are safe: one migrates, the others wait."""
        from .store.migrate import upgrade

        return upgrade(self._ctx.store)

    def schema_status(self) -> SchemaStatus:
        """The database's schema revision against this release's, changing nothing."""
        from .store.migrate import status

        return status(self._ctx.store)

    def close(self) -> None:
        self._ctx.store.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def actor(self) -> str:
        return self._ctx.actor

    # -- versions ---------------------------------------------------------------------------
    def register(
        self,
        model: str,
        path: str | Path | None = None,
        *,
        kind: str = "model",
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        datasets: Sequence[str | DatasetRef] = (),
        parents: Sequence[str] = (),
        components: Sequence[str] = (),
        label: str | None = None,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        feature_pipeline: str | None = None,
        inference_config: str | None = None,
        flavor: str | None = None,
        seed: int | None = None,
        capture_code: bool = True,
        capture_environment: bool = True,
        code_dir: str | Path | None = None,
        project: str | None = None,
        progress: ProgressFactory | None = None,
        run: str | None = None,
    ) -> Version:
        """Register a new immutable version of *model* from the file or directory *path*.

        With *run*, the version carries that run's params, final metrics, datasets, code and
        environment (explicit arguments win) and links back to it; *path* defaults to the
        model the run logged under ``model/``."""
        from .service.versions import RegisterRequest, register

        if isinstance(path, str) and not path.strip():  # Path("") would mean the cwd
            from .errors import InvalidInput

            raise InvalidInput("path is empty", path="")
        req = RegisterRequest(
            model=model,
            path=Path(path) if path is not None else None,
            kind=kind,
            params=params or {},
            metrics=metrics or {},
            tags=tags or {},
            datasets=datasets,
            parents=parents,
            components=components,
            label=label,
            description=description,
            config=config,
            feature_pipeline=feature_pipeline,
            inference_config=inference_config,
            flavor=flavor,
            seed=seed,
            capture_code=capture_code,
            capture_environment=capture_environment,
            code_dir=Path(code_dir) if code_dir is not None else None,
            progress=progress,
        )
        if run is None:
            return register(self._ctx, req, project)
        import shutil

        from .service.from_run import materialize_run_model, request_from_run

        proj = self._project(project)
        temp = None
        if path is None and kind == "model":
            temp = materialize_run_model(self._ctx, run, proj)
            req.path = temp
        try:
            return register(self._ctx, request_from_run(self._ctx, req, run, proj), project)
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    def get(self, ref: str, *, at: datetime | str | None = None) -> Version:
        """The version *ref* names (``fraud:3``, ``fraud@champion``, ``fraud@production``),
        or the one it named at time *at*."""
        from .service.versions import get

        return get(self._ctx, ref, self._time(at))

    def models(self, *, project: str | None = None) -> list[Model]:
        from .service.versions import list_models

        return list_models(self._ctx, project)

    def versions(self, model: str, *, project: str | None = None) -> list[Version]:
        from .service.versions import list_versions

        return list_versions(self._ctx, model, project)

    def search(
        self,
        query: str,
        *,
        project: str | None = None,
        all_projects: bool = False,
        limit: int | None = 1000,
    ) -> list[Version]:
        from .service.searching import search

        return search(self._ctx, query, project=project, all_projects=all_projects, limit=limit)

    def manifest(self, ref: str) -> Manifest:
        """The version's manifest (read from the cold tier, verified, when it is archived)."""
        from .service.artifacts import read_manifest

        version = self.get(ref)
        try:
            return read_manifest(self._ctx, version.artifact_digest)
        except NotFound:
            from .service.coldtier import cold_manifest

            found = cold_manifest(self._ctx, f"{version.project}/{version.model}:{version.number}")
            if found is None:
                raise
            return found

    def pull(
        self,
        ref: str,
        dest: str | Path,
        *,
        overwrite: bool = False,
        progress: ProgressFactory | None = None,
    ) -> PullResult:
        """Write the version's files under *dest*, verifying every digest. An archived
        version is restored from the cold tier first (docs/gc.md)."""
        from .service.artifacts import pull
        from .service.coldtier import restore

        version = self.get(ref)
        exact = f"{version.project}/{version.model}:{version.number}"
        for attempt in (1, 2):
            try:
                return pull(
                    self._ctx,
                    version.artifact_digest,
                    str(version),
                    Path(dest),
                    overwrite=overwrite,
                    progress=progress,
                )
            except NotFound:
                # hot copies of an archived version are missing (or being swept): restore
                if attempt == 1 and restore(self._ctx, exact)["restored"]:
                    continue
                from .service.gc import deletion_of

                gone = deletion_of(self._ctx, exact)
                if gone is None:
                    raise
                raise NotFound(
                    f"the artifact of {version} was deleted at {gone['deleted_at']} by "
                    f"{gone['deleted_by']} ({gone['reason']}); its record and history remain"
                ) from None
        raise AssertionError("unreachable")

    def restore(self, ref: str) -> dict[str, Any]:
        """Copy an archived version's artifact back from the cold tier to the hot store,
        every blob verified first (``restored`` is False if it was not archived)."""
        from .service.coldtier import restore

        version = self.get(ref)
        return restore(self._ctx, f"{version.project}/{version.model}:{version.number}")

    def archive_of(self, ref: str) -> dict[str, Any] | None:
        """Where, when, by whom and why the version's artifact moved to the cold tier; None
        while it is hot."""
        from .service.coldtier import archive_of

        return archive_of(self._ctx, ref)

    # -- retention: deleting artifacts, holds, garbage collection ---------------------------
    def delete_artifact(self, ref: str, *, reason: str) -> dict[str, Any]:
        """Delete a version's artifact (its record and history stay); refused for versions in
        production, deployed, held, or in production or deployed within the retention window
        (docs/gc.md). The bytes go at the next ``gc``."""
        from .service.gc import delete_artifact

        return delete_artifact(self._ctx, ref, reason)

    def prune(
        self, model: str, *, keep_last: int, reason: str | None = None, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        """Delete the artifacts of all but the newest *keep_last* versions (protected ones
        are kept and say why)."""
        from .service.gc import prune

        return prune(self._ctx, model, keep_last, reason, dry_run)

    def hold(self, ref: str, *, reason: str) -> dict[str, Any]:
        """Put a version under a legal hold: its artifact cannot be deleted."""
        from .service.gc import hold

        return hold(self._ctx, ref, reason)

    def release_hold(self, ref: str, *, reason: str) -> dict[str, Any]:
        from .service.gc import hold

        return hold(self._ctx, ref, reason, remove=True)

    def holds(self) -> list[dict[str, Any]]:
        from .service.gc import holds

        return holds(self._ctx)

    def apply_retention(self, *, dry_run: bool = False) -> list[dict[str, Any]]:
        """Delete the artifacts the retention policy file (``settings.retention``) does not
        keep, or move them to the cold tier when ``settings.cold_blobs`` names one; protected
        versions are kept and say why."""
        from .service.retention import apply_retention

        return apply_retention(self._ctx, dry_run=dry_run)

    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> dict[str, Any]:
        """Mark and sweep the blob store (the only code path that deletes blobs)."""
        from .service.gc import gc

        return gc(self._ctx, dry_run=dry_run, grace_seconds=grace_seconds).to_json()

    def diff(self, a: str, b: str) -> VersionDiff:
        from .service.diffing import diff

        return diff(self._ctx, self.get(a), self.get(b))

    # -- lifecycle --------------------------------------------------------------------------
    def approve(self, ref: str, *, comment: str | None = None) -> Approval:
        from .service.stages import approve

        return approve(self._ctx, ref, comment)

    def approvals(self, ref: str) -> list[Approval]:
        from .service.stages import approvals

        return approvals(self._ctx, ref)

    def promote(
        self, ref: str, to: str, *, reason: str | None = None, override: bool = False
    ) -> Transition:
        """Move *ref* to stage *to* if its gate passes. ``override=True`` lets an admin (see
        the policy's ``admins``) pass failed metric and evaluation rules, with a reason; it is
        audited as ``gate.override``. Approvals are never overridden."""
        from .service.stages import promote

        return promote(self._ctx, ref, to, reason, override=override)

    def rollback(self, model: str, *, reason: str, to: int | None = None) -> Transition:
        from .service.stages import rollback

        return rollback(self._ctx, model, reason, to)

    def stage_history(self, model: str) -> list[StageInterval]:
        from .service.stages import stage_history

        return stage_history(self._ctx, model)

    def set_alias(
        self, model: str, alias: str, ref: str, *, expect: Expect = None
    ) -> AliasInterval:
        """Point *alias* at *ref*; with *expect*, only if it currently points at that version
        (``"none"``: only if unset)."""
        from .service.aliases import set_alias

        return set_alias(self._ctx, model, alias, ref, expect)

    def remove_alias(self, model: str, alias: str, *, expect: Expect = None) -> AliasInterval:
        from .service.aliases import remove_alias

        return remove_alias(self._ctx, model, alias, expect)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasInterval]:
        from .service.aliases import alias_history

        return alias_history(self._ctx, model, alias)

    # -- audit ------------------------------------------------------------------------------
    def audit(
        self,
        *,
        model: str | None = None,
        project: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after_seq: int = 0,
        limit: int | None = 1000,
        newest_first: bool = False,
    ) -> list[AuditEvent]:
        from .service.auditing import list_events

        return list_events(
            self._ctx,
            model=model,
            project=project,
            actor=actor,
            action=action,
            since=self._time(since),
            until=self._time(until),
            after_seq=after_seq,
            limit=limit,
            newest_first=newest_first,
        )

    def erase_actor(self, actor: str, *, reason: str) -> dict[str, Any]:
        """Erase *actor*'s clear name (and salts) from every event that commits to it; the
        log still verifies, queries show ``erased:…``. Recorded as ``audit.erase``."""
        from .service.auditing import erase_actor

        return erase_actor(self._ctx, actor, reason)

    def verify_audit(self) -> AuditVerification:
        """Check the chain, the Merkle tree, every checkpoint's signature and the witness; the
        result names the first bad sequence number and which check failed."""
        from .service.transparency import verify_all

        return verify_all(self._ctx)

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign a checkpoint of the audit log now (None while the log is empty)."""
        from .service.transparency import checkpoint

        cp = checkpoint(self._ctx)
        return None if cp is None else cp.to_json()

    def checkpoints(self) -> list[dict[str, Any]]:
        from .service.transparency import list_checkpoints

        with self._ctx.store.read() as conn:
            return [c.to_json() for c in list_checkpoints(conn)]

    def audit_public_key(self) -> bytes:
        """The PEM public key that verifies this log's checkpoints."""
        from .checkpoints import public_pem
        from .service.transparency import public_key

        return public_pem(public_key(self._ctx))

    def inclusion_proof(self, seq: int, *, tree_size: int | None = None) -> dict[str, Any]:
        """Proof that audit event *seq* is in the log signed by a checkpoint (newest by default)."""
        from .service.transparency import inclusion_proof

        return inclusion_proof(self._ctx, seq, size=tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> dict[str, Any]:
        """Proof that the checkpointed log of *old_size* is a prefix of the one of *new_size*."""
        from .service.transparency import consistency_proof

        return consistency_proof(self._ctx, old_size, new_size)

    def explain(
        self, ref: str, *, env: str | None = None, at: datetime | str | None = None
    ) -> dict[str, Any]:
        """The incident report for *ref* (e.g. ``fraud@production``) at time *at*: what served,
        since when and by whom, approvals, gates, record, diff, rollbacks, audit proofs."""
        from .explain import explain

        return explain(self, ref, env=env, at=self._time(at))

    def export_audit(
        self,
        out: str | Path,
        *,
        model: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Write an offline bundle (events, checkpoints, proofs, public key) for
        ``python -m modelvault.verify``."""
        from .service.transparency import export_bundle

        return export_bundle(
            self._ctx, Path(out), model=model, since=self._time(since), until=self._time(until)
        )

    def _time(self, value: datetime | str | None) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return parse_time(value, now=self._ctx.now())
