"""Loading a release for serving: its model version's files materialized from the blob store
(every digest verified) and loaded through the version's flavor, plus the resolved inference
config. Used by ``deploy`` (a release that cannot load is refused before traffic moves) and by
the gateway."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..deploy.records import Release
from ..domain import Version
from ..errors import InvalidInput, ModelVaultError, NotFound
from ..flavors import LoadedModel, load
from .artifacts import pull
from .context import Context
from .gating import policy_for
from .versions import get


@dataclass(frozen=True, slots=True)
class LoadedRelease:
    release: Release
    version: Version
    model: LoadedModel | None  # None for a config-only release
    config: Mapping[str, Any] | None
    config_ref: str | None

    @property
    def key(self) -> str:
        return self.release.key


def load_release(ctx: Context, project: str, release: Release) -> LoadedRelease:
    version = get(ctx, f"{project}/{release.model}:{release.version}")
    config: Mapping[str, Any] | None = None
    config_ref = None
    if release.config_model is not None:
        cfg = get(ctx, f"{project}/{release.config_model}:{release.config_version}")
        config, config_ref = cfg.config, str(cfg)
    if version.kind == "config":
        return LoadedRelease(release, version, None, version.config, str(version))
    trusted = policy_for(ctx, project, release.model).trusted_code
    dest = Path(tempfile.mkdtemp(prefix="mv-serve-"))
    try:
        try:
            pull(ctx, version.artifact_digest, str(version), dest, overwrite=True)
        except NotFound:
            # an archived version is deployed again: bring it back from the cold tier first
            from .coldtier import restore

            if not restore(ctx, f"{project}/{release.model}:{release.version}")["restored"]:
                raise
            pull(ctx, version.artifact_digest, str(version), dest, overwrite=True)
        model = load(dest, version.flavor, trusted=trusted)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return LoadedRelease(release, version, model, config, config_ref)


def trial_load(ctx: Context, project: str, release: Release) -> None:
    """Raise, naming the release, if it cannot be loaded for serving."""
    try:
        load_release(ctx, project, release)
    except ModelVaultError as exc:
        raise type(exc)(
            f"release {release} cannot be served, refused before any traffic moved: {exc.message}",
            **exc.fields,
        ) from None
    except Exception as exc:  # a flavor's own library failing on the files
        raise InvalidInput(
            f"release {release} cannot be served, refused before any traffic moved: "
            f"{type(exc).__name__}: {exc}",
            field="release",
        ) from None
