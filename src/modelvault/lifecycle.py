"""Stages of a version and the transitions between them.

development -> staging -> production -> archived -> retired. Production is reached only from
staging (or from archived by a rollback); retired is final.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import Conflict, InvalidInput


class Stage(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"
    RETIRED = "retired"


STAGES: frozenset[str] = frozenset(s.value for s in Stage)

# Promotions a user may ask for. Production -> archived happens implicitly when another
# version takes production; archived -> production only through rollback.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.DEVELOPMENT: frozenset({Stage.STAGING, Stage.ARCHIVED, Stage.RETIRED}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.DEVELOPMENT, Stage.ARCHIVED, Stage.RETIRED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING, Stage.RETIRED}),
    Stage.RETIRED: frozenset(),
}


def parse_stage(value: str) -> Stage:
    try:
        return Stage(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"unknown stage {value!r}: choose one of {', '.join(s.value for s in Stage)}",
            field="stage",
        ) from None


def check_transition(current: Stage, target: Stage, *, model: str, version: int) -> None:
    if current == target:
        raise Conflict(
            f"{model}:{version} is already in {target.value}",
            model=model,
            version=version,
            stage=target.value,
        )
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing (final)"
        hint = ""
        if current is Stage.DEVELOPMENT and target is Stage.PRODUCTION:
            hint = "; promote it to staging first"
        elif current is Stage.ARCHIVED and target is Stage.PRODUCTION:
            hint = "; use rollback to restore a previous production version"
        raise Conflict(
            f"cannot move {model}:{version} from {current.value} to {target.value} "
            f"(allowed: {allowed}){hint}",
            model=model,
            version=version,
            stage=current.value,
            target=target.value,
        )
