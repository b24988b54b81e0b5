"""Promotion policy: the gates a version passes to enter staging or production — distinct
approvals, a required evaluation set, metric rules — and who may override them.

Read from a TOML file (default ``$MODELVAULT_HOME/policy.toml``, format in docs/policy.md);
a model section overrides its project's, which overrides ``[defaults]``. No file means one
approval for production and nothing else.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .gates import Rule, parse_rule

_KNOWN_KEYS = {"approvals", "admins", "gates", "models", "trusted_code"}
_GATE_KEYS = {"approvals", "eval_set", "rules"}
GATED_STAGES = ("staging", "production")
DEFAULT_APPROVALS = 1


@dataclass(frozen=True, slots=True)
class StageGate:
    """What a version needs to enter one stage; None means "as inherited"."""

    approvals: int | None = None
    eval_set: str | None = None
    rules: tuple[Rule, ...] | None = None


@dataclass(frozen=True, slots=True)
class ProjectPolicy:
    approvals: int = DEFAULT_APPROVALS
    admins: tuple[str, ...] = ()
    gates: Mapping[str, StageGate] = field(default_factory=dict)
    models: Mapping[str, ProjectPolicy] = field(default_factory=dict)
    # the project's own code (python-flavor entry points, pickles) may run in gateways
    trusted_code: bool = False

    def gate(self, stage: str) -> StageGate:
        """The gate for *stage* with every value filled in."""
        found = self.gates.get(stage, StageGate())
        default_approvals = self.approvals if stage == "production" else 0
        return StageGate(
            approvals=found.approvals if found.approvals is not None else default_approvals,
            eval_set=found.eval_set,
            rules=found.rules or (),
        )


@dataclass(frozen=True, slots=True)
class Policy:
    defaults: ProjectPolicy
    projects: dict[str, ProjectPolicy]

    def for_project(self, project: str) -> ProjectPolicy:
        return self.projects.get(project, self.defaults)

    def for_model(self, project: str, model: str) -> ProjectPolicy:
        section = self.for_project(project)
        return section.models.get(model, section)


def _line_of(text: str, needle: str) -> str:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return f" (line {number})"
    return ""


def _approvals(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
        raise InvalidInput(
            f"policy: approvals in {where} must be a whole number from 0 to 20", field="policy"
        )
    return value


def _gate(data: Any, where: str, base: StageGate, source: str, text: str) -> StageGate:
    if not isinstance(data, dict):
        raise InvalidInput(f"policy: {where} must be a table", field="policy")
    unknown = set(data) - _GATE_KEYS
    if unknown:
        raise InvalidInput(
            f"policy: unknown key {sorted(unknown)[0]!r} in {where} "
            f"(known: {', '.join(sorted(_GATE_KEYS))})",
            field="policy",
        )
    approvals = base.approvals
    if "approvals" in data:
        approvals = _approvals(data["approvals"], where)
    eval_set = base.eval_set
    if "eval_set" in data:
        eval_set = data["eval_set"]
        if not isinstance(eval_set, str) or not eval_set.strip():
            raise InvalidInput(
                f"policy: eval_set in {where} must be a snapshot name or digest", field="policy"
            )
    rules = base.rules
    if "rules" in data:
        raw = data["rules"]
        if not isinstance(raw, list):
            raise InvalidInput(f"policy: rules in {where} must be a list of text", field="policy")
        parsed = []
        for item in raw:
            try:
                parsed.append(parse_rule(item))
            except InvalidInput as exc:
                line = _line_of(text, item) if isinstance(item, str) else ""
                raise InvalidInput(
                    f"{source}{line}: {where}: {exc.message}", field="policy"
                ) from None
        rules = tuple(parsed)
    return StageGate(approvals=approvals, eval_set=eval_set, rules=rules)


def _section(
    data: Any, where: str, base: ProjectPolicy, source: str, text: str, *, models: bool
) -> ProjectPolicy:
    if not isinstance(data, dict):
        raise InvalidInput(f"policy: {where} must be a table", field="policy")
    known = _KNOWN_KEYS if models else _KNOWN_KEYS - {"models"}
    unknown = set(data) - known
    if unknown:
        raise InvalidInput(
            f"policy: unknown key {sorted(unknown)[0]!r} in {where} "
            f"(known: {', '.join(sorted(known))})",
            field="policy",
        )
    approvals = _approvals(data.get("approvals", base.approvals), where)
    admins = data.get("admins", list(base.admins))
    if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
        raise InvalidInput(f"policy: admins in {where} must be a list of names", field="policy")
    gates_raw = data.get("gates", {})
    if not isinstance(gates_raw, dict):
        raise InvalidInput(f"policy: gates in {where} must be a table", field="policy")
    gates = dict(base.gates)
    for stage, gate_data in gates_raw.items():
        if stage not in GATED_STAGES:
            raise InvalidInput(
                f"policy: gates in {where} are for {' and '.join(GATED_STAGES)}, not {stage!r}",
                field="policy",
            )
        gates[stage] = _gate(
            gate_data, f"{where}.gates.{stage}", base.gates.get(stage, StageGate()), source, text
        )
    trusted = data.get("trusted_code", base.trusted_code)
    if not isinstance(trusted, bool):
        raise InvalidInput(f"policy: trusted_code in {where} must be true or false", field="policy")
    section = ProjectPolicy(
        approvals=approvals, admins=tuple(admins), gates=gates, trusted_code=trusted
    )
    models_raw = data.get("models", {}) if models else {}
    if not isinstance(models_raw, dict):
        raise InvalidInput(f"policy: models in {where} must be a table", field="policy")
    per_model = {
        name: _section(sub, f"{where}.models.{name}", section, source, text, models=False)
        for name, sub in models_raw.items()
    }
    return replace(section, models=per_model)


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
    defaults = _section(
        data.get("defaults", {}), "[defaults]", ProjectPolicy(), source, text, models=False
    )
    projects_raw = data.get("projects", {})
    if not isinstance(projects_raw, dict):
        raise InvalidInput(f"{source}: projects must be a table", field="policy")
    projects = {
        name: _section(section, f"[projects.{name}]", defaults, source, text, models=True)
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
