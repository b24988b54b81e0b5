"""References to versions: ``MODEL:N``, ``MODEL:SEMVER``, ``MODEL@ALIAS``, ``MODEL@STAGE``,
``MODEL@latest``, each optionally prefixed by ``PROJECT/``. A bare ``MODEL`` means its latest
version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidInput
from .lifecycle import STAGES
from .limits import LIMITS, SEMVER_PATTERN, check_alias, check_name, check_semver

_REF = re.compile(
    r"^(?:(?P<project>[^/:@\s]+)/)?(?P<model>[^/:@\s]+)"
    r"(?:(?P<colon>:)(?P<number>[^:@/\s]+)|(?P<at>@)(?P<name>[^:@/\s]+))?$"
)
_SEMVER = re.compile(SEMVER_PATTERN)


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference; exactly one of number, label, alias, stage is set, or none (latest)."""

    project: str | None
    model: str
    number: int | None = None
    label: str | None = None
    alias: str | None = None
    stage: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.project}/" if self.project else ""
        if self.number is not None:
            return f"{prefix}{self.model}:{self.number}"
        if self.label is not None:
            return f"{prefix}{self.model}:{self.label}"
        if self.alias is not None:
            return f"{prefix}{self.model}@{self.alias}"
        if self.stage is not None:
            return f"{prefix}{self.model}@{self.stage}"
        return f"{prefix}{self.model}"


def parse_ref(text: str) -> Ref:
    if not isinstance(text, str) or len(text) > LIMITS["reference_chars"]:
        raise InvalidInput("reference is too long or not text", field="ref")
    m = _REF.match(text.strip())
    if not m:
        raise InvalidInput(
            f"cannot read reference {text!r}: use MODEL:N, MODEL@ALIAS, MODEL@production or "
            "PROJECT/MODEL:N",
            field="ref",
        )
    project = m.group("project")
    if project is not None:
        check_name(project, what="project name")
    model = check_name(m.group("model"))
    if m.group("colon"):
        selector = m.group("number")
        if selector.isdigit():
            number = int(selector)
            if number < 1 or len(selector) > 12:
                raise InvalidInput(f"version number in {text!r} must be 1 or more", field="ref")
            return Ref(project, model, number=number)
        if _SEMVER.match(selector):
            return Ref(project, model, label=check_semver(selector))
        raise InvalidInput(
            f"cannot read version {selector!r} in {text!r}: use a number or a semantic version",
            field="ref",
        )
    if m.group("at"):
        name = m.group("name")
        if name in STAGES:
            return Ref(project, model, stage=name)
        if name == "latest":
            return Ref(project, model)
        return Ref(project, model, alias=check_alias(name))
    return Ref(project, model)
