"""Reading a version's bytes back: its manifest, and ``pull`` into a directory.

Every file is verified against its digest while it is copied; files land in a staging
directory first and move into place only when all of them verified, so a failed pull leaves
nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..blobs import BlobStore
from ..domain import Manifest, PullResult
from ..errors import Conflict, IntegrityError, InvalidInput
from ..limits import LIMITS
from ..manifest import parse_manifest, safe_dest_path
from .context import Context

Progress = Callable[[int], None]


def read_manifest(ctx: Context, digest: str) -> Manifest:
    return manifest_from(ctx.blobs, digest)


def manifest_from(blobs: BlobStore, digest: str) -> Manifest:
    # a manifest larger than any valid one is refused before it is read into memory
    size = blobs.size(digest)
    if size > LIMITS["manifest_bytes"]:
        raise IntegrityError(
            f"manifest {digest} is {size} bytes, more than any valid manifest "
            f"({LIMITS['manifest_bytes']})",
            digest=digest,
        )
    return parse_manifest(blobs.read_bytes(digest, verify=True))


def pull(
    ctx: Context,
    digest: str,
    ref: str,
    dest: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int], Progress | None] | None = None,
) -> PullResult:
    return pull_from(ctx.blobs, digest, ref, dest, overwrite=overwrite, progress=progress)


def pull_from(
    blobs: BlobStore,
    digest: str,
    ref: str,
    dest: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int], Progress | None] | None = None,
) -> PullResult:
    """Write the files of manifest *digest* under *dest* from *blobs*, each verified."""
    manifest = manifest_from(blobs, digest)
    dest = dest.absolute()
    if dest.exists() and not dest.is_dir():
        raise InvalidInput(f"destination {dest} exists and is not a directory", field="dest")
    targets = [(f, safe_dest_path(dest, f.path)) for f in manifest.files]
    if not overwrite:
        clash = next((t for _, t in targets if t.exists() or t.is_symlink()), None)
        if clash is not None:
            raise Conflict(
                f"{clash} already exists; pass --overwrite to replace it", path=str(clash)
            )
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".modelvault-pull-", dir=dest))
    tick = progress(manifest.total_size) if progress else None
    try:
        for entry, _ in targets:
            staged = safe_dest_path(staging, entry.path)
            staged.parent.mkdir(parents=True, exist_ok=True)
            try:
                copied = blobs.copy_to(entry.digest, staged, progress=tick)
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{ref}: file {entry.path} does not match its digest {entry.digest}; the "
                    "stored blob is corrupt",
                    path=entry.path,
                    digest=entry.digest,
                ) from exc
            if copied != entry.size:
                raise IntegrityError(
                    f"{ref}: file {entry.path} is {copied} bytes but its manifest says "
                    f"{entry.size}",
                    path=entry.path,
                    digest=entry.digest,
                )
            os.chmod(staged, entry.mode & 0o777)
        for entry, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(safe_dest_path(staging, entry.path), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PullResult(
        ref=ref,
        dest=str(dest),
        files=tuple(f.path for f in manifest.files),
        bytes=manifest.total_size,
    )
