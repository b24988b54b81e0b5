"""Automatic capture of code and environment, shared by registration and runs.

``capture`` stores what is too large to inline (the uncommitted diff, the package list) as
blobs and returns the references plus the digests of every blob it stored.
"""

from __future__ import annotations

from pathlib import Path

from ..blobs import BlobStore
from ..domain import CodeRef, EnvironmentInfo


def capture(
    blobs: BlobStore,
    *,
    code_dir: Path | None,
    seed: int | None,
    code: bool = True,
    environment: bool = True,
) -> tuple[CodeRef | None, EnvironmentInfo | None, list[tuple[str, str]]]:
    from .environment import capture_environment, packages_document
    from .git import capture_git

    stored: list[tuple[str, str]] = []
    code_ref = None
    if code:
        state = capture_git(code_dir or Path.cwd())
        if state is not None:
            diff_digest = None
            if state.diff:
                diff_digest = blobs.put_bytes(state.diff).digest
                stored.append((diff_digest, "code-diff"))
            code_ref = CodeRef(
                commit=state.commit,
                branch=state.branch,
                remote=state.remote,
                dirty=state.dirty,
                diff_digest=diff_digest,
                untracked=state.untracked,
            )
    env = None
    if environment:
        packages, digest = packages_document()
        if not blobs.exists(digest):
            blobs.put_bytes(packages)
        stored.append((digest, "packages"))
        env = capture_environment(seed=seed, packages_digest=digest)
    return code_ref, env, stored
