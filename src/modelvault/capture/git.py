"""Capture of the code a version comes from, when registering inside a git work tree.

Two or three git calls: status (commit, branch, dirty), the remote, and the uncommitted diff
when there is one (stored as a blob so it can be read back).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class GitState:
    commit: str | None
    branch: str | None
    remote: str | None
    dirty: bool
    untracked: int
    diff: bytes | None


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    exe = shutil.which("git")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, "-C", str(cwd), *args], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def inside_work_tree(cwd: Path) -> bool:
    """Cheap test before spawning git: is there a .git entry here or in a parent?"""
    try:
        here = cwd.resolve()
    except OSError:
        return False
    return any((d / ".git").exists() for d in (here, *here.parents))


def capture_git(cwd: Path) -> GitState | None:
    """The state of the git work tree containing *cwd*, or None outside one."""
    if not inside_work_tree(cwd):
        return None
    status = _git(cwd, "status", "--porcelain=v2", "--branch", "--untracked-files=normal")
    if status is None or status.returncode != 0:
        return None
    commit = branch = upstream_remote = None
    changed = untracked = 0
    for raw in status.stdout.decode("utf-8", "replace").splitlines():
        if raw.startswith("# branch.oid "):
            oid = raw.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif raw.startswith("# branch.head "):
            head = raw.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif raw.startswith("# branch.upstream "):
            upstream_remote = raw.split(" ", 2)[2].split("/", 1)[0]
        elif raw.startswith("? "):
            untracked += 1
        elif raw and not raw.startswith("#"):
            changed += 1
    remote = None
    remote_out = _git(cwd, "remote", "get-url", upstream_remote or "origin")
    if remote_out is not None and remote_out.returncode == 0:
        remote = remote_out.stdout.decode("utf-8", "replace").strip() or None
    diff = None
    if changed and commit is not None:
        out = _git(cwd, "diff", "HEAD", "--binary")
        if out is not None and out.returncode == 0:
            diff = out.stdout
    return GitState(
        commit=commit,
        branch=branch,
        remote=remote,
        dirty=bool(changed or untracked),
        untracked=untracked,
        diff=diff,
    )
