"""The retention policy file (``retention.toml``, docs/gc.md): which artifacts stay hot.

::

    [defaults]
    keep_last = 10                          # the newest N versions of every model
    keep_top = { metric = "auc", k = 3 }    # and the best k by a metric (higher is better)
    candidate_ttl_days = 90                 # never-promoted versions older than this go
    production_window_days = 3650           # versions once in production stay this long
    archive_after_days = 180                # with a cold tier: older versions move there

    [models."default/fraud"]                # PROJECT/MODEL: replaces [defaults] keys it sets
    keep_last = 20

A model without any rule keeps everything. Protected versions (production, deployed, aliased,
held, in production within the window, 10 years by default) are kept whatever the file says.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import InvalidInput

KEYS = {
    "keep_last",
    "keep_top",
    "candidate_ttl_days",
    "production_window_days",
    "archive_after_days",
}
# versions ever in production stay protected this long after they left it (docs/gc.md)
DEFAULT_WINDOW_DAYS = 3650.0


@dataclass(frozen=True, slots=True)
class Rules:
    keep_last: int | None = None
    keep_top_metric: str | None = None
    keep_top_k: int = 0
    candidate_ttl_days: float | None = None
    production_window_days: float = DEFAULT_WINDOW_DAYS
    archive_after_days: float | None = None

    @property
    def production_window(self) -> timedelta:
        return timedelta(days=self.production_window_days)

    @property
    def empty(self) -> bool:
        return (
            self.keep_last is None
            and self.candidate_ttl_days is None
            and self.archive_after_days is None
        )


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    defaults: Rules
    models: dict[str, Rules]

    @property
    def archives(self) -> bool:
        """True if some rule moves versions to the cold tier by age."""
        every = [self.defaults, *self.models.values()]
        return any(rules.archive_after_days is not None for rules in every)

    def for_model(self, project: str, model: str) -> Rules:
        return self.models.get(f"{project}/{model}", self.defaults)


def _positive(value: Any, where: str, key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise InvalidInput(f"retention: {where} {key} must be a number ≥ 1, not {value!r}")
    return value


def _rules(data: Any, where: str, base: Rules) -> Rules:
    if not isinstance(data, dict):
        raise InvalidInput(f"retention: {where} must be a table")
    unknown = set(data) - KEYS
    if unknown:
        raise InvalidInput(
            f"retention: unknown key {sorted(unknown)[0]!r} in {where} "
            f"(use {', '.join(sorted(KEYS))})"
        )
    rules = base
    if "keep_last" in data:
        rules = replace(rules, keep_last=int(_positive(data["keep_last"], where, "keep_last")))
    if "candidate_ttl_days" in data:
        ttl = _positive(data["candidate_ttl_days"], where, "candidate_ttl_days")
        rules = replace(rules, candidate_ttl_days=float(ttl))
    if "production_window_days" in data:
        window = _positive(data["production_window_days"], where, "production_window_days")
        rules = replace(rules, production_window_days=float(window))
    if "archive_after_days" in data:
        after = _positive(data["archive_after_days"], where, "archive_after_days")
        rules = replace(rules, archive_after_days=float(after))
    if "keep_top" in data:
        top = data["keep_top"]
        if (
            not isinstance(top, dict)
            or set(top) != {"metric", "k"}
            or not isinstance(top["metric"], str)
        ):
            raise InvalidInput(f'retention: {where} keep_top must be {{ metric = "NAME", k = N }}')
        rules = replace(
            rules, keep_top_metric=top["metric"], keep_top_k=int(_positive(top["k"], where, "k"))
        )
    return rules


def parse_retention(text: str, *, source: str = "retention.toml") -> RetentionPolicy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: {exc}") from None
    unknown = set(data) - {"defaults", "models"}
    if unknown:
        raise InvalidInput(
            f"{source}: unknown section {sorted(unknown)[0]!r} (use [defaults] and "
            '[models."PROJECT/MODEL"])'
        )
    defaults = _rules(data.get("defaults", {}), "[defaults]", Rules())
    models_raw = data.get("models", {})
    if not isinstance(models_raw, dict):
        raise InvalidInput(f"{source}: [models] must hold one table per PROJECT/MODEL")
    models = {}
    for name, section in models_raw.items():
        if name.count("/") != 1:
            raise InvalidInput(f'{source}: [models."{name}"] must name PROJECT/MODEL')
        models[name] = _rules(section, f'[models."{name}"]', defaults)
    return RetentionPolicy(defaults, models)


def window_text(days: float) -> str:
    """The retention window for messages: "10 years", "30 days"."""
    if days % 365 == 0:
        years = int(days // 365)
        return f"{years} year{'s' if years != 1 else ''}"
    return f"{days:g} day{'s' if days != 1 else ''}"


def load_retention(path: Path, *, missing_ok: bool = False) -> RetentionPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return RetentionPolicy(Rules(), {})
        raise InvalidInput(
            f"no retention policy at {path}; write one (docs/gc.md) or set MODELVAULT_RETENTION"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the retention policy {path}: {exc}") from None
    return parse_retention(text, source=str(path))
