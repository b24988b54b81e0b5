"""Promotion policy: how many distinct approvals a version needs before production.

Read from a TOML file (default ``$MODELVAULT_HOME/policy.toml``, format in docs/policy.md);
a project section overrides ``[defaults]``. No file means one approval.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput

_KNOWN_KEYS = {"approvals"}
DEFAULT_APPROVALS = 1


@dataclass(frozen=True, slots=True)
class ProjectPolicy:
    approvals: int = DEFAULT_APPROVALS


@dataclass(frozen=True, slots=True)
class Policy:
    defaults: ProjectPolicy
    projects: dict[str, ProjectPolicy]

    def for_project(self, project: str) -> ProjectPolicy:
        return self.projects.get(project, self.defaults)


def _section(data: Any, where: str, base: ProjectPolicy) -> ProjectPolicy:
    if not isinstance(data, dict):
        raise InvalidInput(f"policy: {where} must be a table", field="policy")
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise InvalidInput(
            f"policy: unknown key {sorted(unknown)[0]!r} in {where} "
            f"(known: {', '.join(sorted(_KNOWN_KEYS))})",
            field="policy",
        )
    approvals = data.get("approvals", base.approvals)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or not 0 <= approvals <= 20:
        raise InvalidInput(
            f"policy: approvals in {where} must be a whole number from 0 to 20", field="policy"
        )
    return ProjectPolicy(approvals=approvals)


def parse_policy(text: str, *, source: str = "policy.toml") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: {exc}", field="policy") from None
    unknown = set(data) - {"defaults", "projects"}
    if unknown:
        raise InvalidInput(
            f"{source}: unknown section {sorted(unknown)[0]!r} (use [defaults] and "
            "[projects.NAME])",
            field="policy",
        )
    defaults = _section(data.get("defaults", {}), "[defaults]", ProjectPolicy())
    projects_raw = data.get("projects", {})
    if not isinstance(projects_raw, dict):
        raise InvalidInput(f"{source}: projects must be a table", field="policy")
    projects = {
        name: _section(section, f"[projects.{name}]", defaults)
        for name, section in projects_raw.items()
    }
    return Policy(defaults=defaults, projects=projects)


_cache: dict[Path, tuple[int, Policy]] = {}


def load_policy(path: Path) -> Policy:
    """The policy in *path*, re-read only when the file changes."""
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return Policy(defaults=ProjectPolicy(), projects={})
    cached = _cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read policy file {path}: {exc}", field="policy") from None
    policy = parse_policy(text, source=str(path))
    _cache[path] = (stamp, policy)
    return policy
