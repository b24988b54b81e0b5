"""Allowed names and size limits of user input, checked before anything is written.

These numbers are part of the documented contract (docs/reference/limits.md); a test keeps
the two in step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,249}$"
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

LIMITS: dict[str, int] = {
    "param_value_chars": 6000,
    "tag_value_chars": 5000,
    "description_chars": 20000,
    "reason_chars": 2000,
    "comment_chars": 2000,
    "label_chars": 128,
    "keys_per_kind": 1000,
    "files_per_version": 100_000,
    "path_bytes": 1024,
    "datasets_per_version": 100,
    "parents_per_version": 50,
    "components_per_version": 200,
    "reference_chars": 2048,
    "config_bytes": 1_048_576,
    "manifest_bytes": 67_108_864,
}

_NAME = re.compile(NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_KEY = re.compile(KEY_PATTERN)
_SEMVER = re.compile(SEMVER_PATTERN)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def check_name(value: str, *, what: str = "model name") -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"invalid {what} {_shown(str(value))}: use 1-64 lowercase letters, digits, '.', "
            "'_' or '-', starting and ending with a letter or digit",
            field=what.replace(" ", "_"),
        )
    return value


def check_alias(value: str) -> str:
    from .lifecycle import STAGES

    if not isinstance(value, str) or not _ALIAS.match(value):
        raise InvalidInput(
            f"invalid alias {_shown(str(value))}: use 1-63 lowercase letters, digits, '_' or "
            "'-', starting with a letter",
            field="alias",
        )
    if value in STAGES or value == "latest":
        raise InvalidInput(
            f"alias {value!r} is reserved (stage names and 'latest' resolve by themselves)",
            field="alias",
        )
    return value


def check_key(value: str, *, what: str) -> str:
    if not isinstance(value, str) or not _KEY.match(value):
        raise InvalidInput(
            f"invalid {what} key {_shown(str(value))}: use up to 250 letters, digits, "
            "'_', '.', '-' or '/', not starting with '.', '-' or '/'",
            field=f"{what}_key",
        )
    return value


def check_text(value: str | None, *, limit: str, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text", field=what)
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL characters", field=what)
    if len(value) > LIMITS[limit]:
        raise InvalidInput(
            f"{what} is {len(value)} characters long; the limit is {LIMITS[limit]}", field=what
        )
    return value


def check_semver(value: str) -> str:
    check_text(value, limit="label_chars", what="label")
    if not _SEMVER.match(value):
        raise InvalidInput(
            f"label {_shown(value)} is not a semantic version such as 1.4.0 or 2.0.0-rc.1",
            field="label",
        )
    return value


def _check_count(mapping: Mapping[str, Any], what: str) -> None:
    if len(mapping) > LIMITS["keys_per_kind"]:
        raise InvalidInput(
            f"too many {what}s: {len(mapping)} (limit {LIMITS['keys_per_kind']})", field=what
        )


def check_params(params: Mapping[str, Any]) -> dict[str, str | int | float | bool | None]:
    """Params are scalars; anything else is refused rather than silently stringified."""
    _check_count(params, "param")
    out: dict[str, str | int | float | bool | None] = {}
    for key, value in params.items():
        check_key(key, what="param")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"param {key!r} is {value}; params must be finite", field="param")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput(
                f"param {key!r} has type {type(value).__name__}; use str, int, float or bool",
                field="param",
            )
        if isinstance(value, str):
            check_text(value, limit="param_value_chars", what=f"param {key!r}")
        out[key] = value
    return out


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics of a version are finite numbers; NaN and infinities are refused with the key."""
    _check_count(metrics, "metric")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        check_key(key, what="metric")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"metric {key!r} must be a number, got {value!r}", field="metric")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(
                f"metric {key!r} is {number}; version metrics must be finite numbers",
                field="metric",
            )
        out[key] = number
    return out


def check_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    _check_count(tags, "tag")
    out: dict[str, str] = {}
    for key, value in tags.items():
        check_key(key, what="tag")
        if not isinstance(value, str):
            raise InvalidInput(f"tag {key!r} must be text, got {value!r}", field="tag")
        check_text(value, limit="tag_value_chars", what=f"tag {key!r}")
        out[key] = value
    return out
