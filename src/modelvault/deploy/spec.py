"""Deployment specs: reading one (a YAML document or command-line options), checking every
field, and the canonical JSON stored in a deployment's interval row.

References to versions are resolved by the caller's *resolve* function, so this module holds
only shape rules and stays free of the database.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from .guardrails import parse_guardrail
from .records import (
    BUCKETS,
    Arm,
    DeploymentSpec,
    FeatureRoute,
    Guardrail,
    Release,
    RolloutPlan,
    Segment,
    Shadow,
    Standby,
)

Resolve = Callable[[str, str | None], Release]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_STICKY = re.compile(r"^(header|json):[A-Za-z0-9_.\-]{1,128}$")
_DOC_KEYS = {
    "model",
    "environment",
    "arms",
    "release",
    "config",
    "sticky",
    "segments",
    "features",
    "shadows",
    "rollout",
    "guardrails",
    "standby",
    "preview",
    "reason",
}
DEFAULT_STANDBY_S = 48 * 3600.0
MAX_ARMS = 16


def parse_duration(value: Any, what: str) -> float:
    """Seconds from ``90``, ``30s``, ``10m``, ``2h``, ``500ms``."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what}: {value!r} is not a duration (e.g. 30s, 10m)", field=what)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise InvalidInput(
                f"{what}: cannot read {value!r} as a duration (e.g. 30s, 10m, 2h)", field=what
            )
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0 or seconds > 366 * 86400:
        raise InvalidInput(f"{what}: {value!r} is out of range (0 to 366 days)", field=what)
    return seconds


def check_weight(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what}: weight {value!r} is not a number", field=what)
    weight = float(value)
    if not 0 <= weight <= 100:
        raise InvalidInput(f"{what}: weight {weight:g} is outside 0-100", field=what)
    units = weight * BUCKETS / 100
    if abs(units - round(units)) > 1e-6:
        raise InvalidInput(
            f"{what}: weight {weight:g} is finer than 0.001 (one bucket in {BUCKETS})",
            field=what,
        )
    return weight


def check_weights(arms: tuple[Arm, ...]) -> tuple[Arm, ...]:
    if not arms:
        raise InvalidInput("a deployment needs at least one arm", field="arms")
    if len(arms) > MAX_ARMS:
        raise InvalidInput(f"a deployment has at most {MAX_ARMS} arms", field="arms")
    total = sum(round(a.weight * BUCKETS / 100) for a in arms)
    if total != BUCKETS:
        listed = " + ".join(f"{a.weight:g}" for a in arms)
        raise InvalidInput(
            f"arm weights must sum to 100, not {listed} = {total * 100 / BUCKETS:g}",
            field="arms",
        )
    seen: set[Release] = set()
    for arm in arms:
        if arm.release in seen:
            raise InvalidInput(f"release {arm.release} is listed in two arms", field="arms")
        seen.add(arm.release)
    return arms


def check_sticky(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _STICKY.match(value):
        raise InvalidInput(
            f"sticky key {value!r}: use header:NAME or json:FIELD (e.g. header:x-user-id)",
            field="sticky",
        )
    kind, _, name = value.partition(":")
    return f"{kind}:{name.lower()}" if kind == "header" else value


def check_sample(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InvalidInput(f"{what}: sample rate {value!r} must be in (0, 1]", field=what)
    return float(value)


def check_steps(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise InvalidInput("canary steps: give percentages such as 1,5,25,50,100", field="canary")
    steps: list[float] = []
    for raw in value:
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise InvalidInput(f"canary step {raw!r} is not a number", field="canary") from None
        step = check_weight(number, "canary")
        if step == 0 or (steps and step <= steps[-1]):
            raise InvalidInput(
                "canary steps must rise above 0, each larger than the last", field="canary"
            )
        steps.append(step)
    if steps[-1] != 100:
        raise InvalidInput("the last canary step must be 100", field="canary")
    return tuple(steps)


def _release_of(item: Any, resolve: Resolve, what: str) -> Release:
    if isinstance(item, str):
        return resolve(item, None)
    if isinstance(item, Mapping) and isinstance(item.get("release"), str):
        config = item.get("config")
        if config is not None and not isinstance(config, str):
            raise InvalidInput(f"{what}: config must be a version reference", field=what)
        return resolve(item["release"], config)
    raise InvalidInput(f"{what}: give a release reference such as fraud:3", field=what)


def _only(item: Mapping[str, Any], keys: set[str], what: str) -> None:
    unknown = set(item) - keys
    if unknown:
        raise InvalidInput(
            f"{what}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(keys))})",
            field=what,
        )


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a list", field=key)
    return value


def parse_document(
    data: Any, resolve: Resolve, *, current: DeploymentSpec | None, now_text: str
) -> DeploymentSpec:
    """A DeploymentSpec from a spec document (docs/rollout.md), checked field by field.

    With a ``rollout`` section the arms are derived: the candidate at the first step, the
    release now stable (``current``'s) at the rest."""
    if not isinstance(data, Mapping):
        raise InvalidInput("a deployment spec must be a mapping", field="spec")
    _only(data, _DOC_KEYS, "spec")
    arms: list[Arm] = []
    for i, item in enumerate(_list(data, "arms")):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"arms[{i}] must be a mapping with release and weight", field="arms")
        _only(item, {"release", "config", "weight"}, f"arms[{i}]")
        arms.append(
            Arm(_release_of(item, resolve, f"arms[{i}]"), check_weight(item.get("weight"), "arms"))
        )
    if data.get("release") is not None:
        if arms:
            raise InvalidInput("give either release or arms, not both", field="release")
        arms.append(Arm(_release_of(data, resolve, "release"), 100.0))
    rollout = None
    raw_rollout = data.get("rollout")
    if raw_rollout is not None:
        if not isinstance(raw_rollout, Mapping):
            raise InvalidInput("rollout must be a mapping", field="rollout")
        _only(raw_rollout, {"release", "config", "steps", "bake", "stable"}, "rollout")
        if arms:
            raise InvalidInput(
                "a rollout derives its arms; do not give arms or release with it", field="arms"
            )
        candidate = _release_of(raw_rollout, resolve, "rollout")
        if raw_rollout.get("stable") is not None:
            stable = _release_of(raw_rollout["stable"], resolve, "rollout.stable")
        elif current is not None:
            stable = current.stable
        else:
            raise InvalidInput(
                "nothing to canary against: the deployment has no release yet; deploy one "
                "first without a rollout",
                field="rollout",
            )
        if stable == candidate:
            raise InvalidInput(f"{candidate} is already the stable release", field="rollout")
        steps = check_steps(raw_rollout.get("steps", [1, 5, 25, 50, 100]))
        bake = parse_duration(raw_rollout.get("bake", "10m"), "bake")
        rollout = RolloutPlan(candidate, stable, steps, bake, 0, "running", now_text)
        arms = list(rollout_arms(rollout))
    segments = []
    for i, item in enumerate(_list(data, "segments")):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"segments[{i}] must be a mapping", field="segments")
        _only(item, {"name", "match", "release", "config"}, f"segments[{i}]")
        match = item.get("match")
        if not isinstance(match, Mapping) or not match:
            raise InvalidInput(
                f"segments[{i}].match must map header:NAME or json:FIELD to a value",
                field="segments",
            )
        cleaned = {}
        for key, value in match.items():
            sticky = check_sticky(key) if isinstance(key, str) else None
            if sticky is None or isinstance(value, Mapping | list):
                raise InvalidInput(
                    f"segments[{i}].match: {key!r} must be header:NAME or json:FIELD mapped "
                    "to one value",
                    field="segments",
                )
            cleaned[sticky] = str(value)
        segments.append(
            Segment(
                cleaned, _release_of(item, resolve, f"segments[{i}]"), str(item.get("name", ""))
            )
        )
    features = []
    raw_features = data.get("features") or {}
    if not isinstance(raw_features, Mapping):
        raise InvalidInput("features must map a feature name to a release", field="features")
    for name, item in raw_features.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
            raise InvalidInput(f"feature name {name!r} is not a valid name", field="features")
        features.append(FeatureRoute(name, _release_of(item, resolve, f"features.{name}")))
    shadows = []
    for i, item in enumerate(_list(data, "shadows")):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"shadows[{i}] must be a mapping", field="shadows")
        _only(item, {"release", "config", "sample"}, f"shadows[{i}]")
        shadows.append(
            Shadow(
                _release_of(item, resolve, f"shadows[{i}]"),
                check_sample(item.get("sample", 1.0), "shadows"),
            )
        )
    guardrails = tuple(
        _guardrail(item, i, default_window=rollout.bake_s if rollout else 300.0)
        for i, item in enumerate(_list(data, "guardrails"))
    )
    preview = data.get("preview")
    spec = DeploymentSpec(
        arms=check_weights(tuple(arms)),
        sticky=check_sticky(data.get("sticky")),
        segments=tuple(segments),
        features=tuple(features),
        shadows=tuple(shadows),
        rollout=rollout,
        guardrails=guardrails,
        preview=_release_of(preview, resolve, "preview") if preview is not None else None,
    )
    standby_s = parse_duration(data.get("standby", DEFAULT_STANDBY_S), "standby")
    return with_standby(spec, current, standby_s, now_text)


def _guardrail(item: Any, i: int, *, default_window: float) -> Guardrail:
    if isinstance(item, str):
        item = {"rule": item}
    if not isinstance(item, Mapping):
        raise InvalidInput(f"guardrails[{i}] must be a rule or a mapping", field="guardrails")
    _only(
        item,
        {"rule", "window", "min_samples", "failure_limit", "on_inconclusive"},
        f"guardrails[{i}]",
    )
    rule = parse_guardrail(str(item.get("rule", "")))
    window = parse_duration(item.get("window", default_window or 300.0), "guardrails.window")
    if window <= 0:
        raise InvalidInput("guardrails.window must be longer than 0", field="guardrails")
    min_samples = item.get("min_samples", 100)
    limit = item.get("failure_limit", 1)
    for value, what in ((min_samples, "min_samples"), (limit, "failure_limit")):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
            raise InvalidInput(f"guardrails[{i}].{what} must be a whole number >= 1", field=what)
    inconclusive = item.get("on_inconclusive", "hold")
    if inconclusive not in {"hold", "rollback"}:
        raise InvalidInput(
            f"guardrails[{i}].on_inconclusive must be hold or rollback", field="guardrails"
        )
    return replace(
        rule,
        window_s=window,
        min_samples=min_samples,
        failure_limit=limit,
        on_inconclusive=inconclusive,
    )


def with_standby(
    spec: DeploymentSpec, current: DeploymentSpec | None, standby_s: float, now_text: str
) -> DeploymentSpec:
    """Keep the release being replaced loaded (hot standby) for *standby_s* seconds."""
    from datetime import timedelta

    from ..timeutil import from_text, to_text

    if current is None or standby_s <= 0:
        return replace(spec, standby=current.standby if current else None)
    previous = current.stable
    if previous in spec.releases() and current.standby is not None:
        return replace(spec, standby=current.standby)
    if previous in spec.releases():
        return spec
    until = to_text(from_text(now_text) + timedelta(seconds=standby_s))
    return replace(spec, standby=Standby(previous, until))


def rollout_arms(plan: RolloutPlan) -> tuple[Arm, ...]:
    """The candidate first (the low buckets, so raising its weight only adds users)."""
    weight = plan.weight
    if weight >= 100:
        return (Arm(plan.candidate, 100.0),)
    if weight <= 0:
        return (Arm(plan.stable, 100.0),)
    return (Arm(plan.candidate, weight), Arm(plan.stable, round(100.0 - weight, 3)))


def read_spec_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read spec file {path}: {exc}", field="spec") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "malformed"
        raise InvalidInput(f"spec file {path} is not valid YAML: {first}", field="spec") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"spec file {path} must hold a mapping", field="spec")
    return data


# -- stored form ------------------------------------------------------------------------


def release_json(r: Release) -> dict[str, Any]:
    return {
        "model": r.model,
        "version": r.version,
        "config_model": r.config_model,
        "config_version": r.config_version,
    }


def release_from(d: Mapping[str, Any]) -> Release:
    return Release(d["model"], int(d["version"]), d.get("config_model"), d.get("config_version"))


def to_json(spec: DeploymentSpec) -> dict[str, Any]:
    from dataclasses import asdict

    r = release_json
    plan = spec.rollout
    return {
        "arms": [{"release": r(a.release), "weight": a.weight} for a in spec.arms],
        "sticky": spec.sticky,
        "segments": [
            {"name": s.name, "match": dict(s.match), "release": r(s.release)} for s in spec.segments
        ],
        "features": [{"feature": f.feature, "release": r(f.release)} for f in spec.features],
        "shadows": [{"release": r(s.release), "sample": s.sample} for s in spec.shadows],
        "rollout": None
        if plan is None
        else {
            "candidate": r(plan.candidate),
            "stable": r(plan.stable),
            "steps": list(plan.steps),
            "bake_s": plan.bake_s,
            "step": plan.step,
            "status": plan.status,
            "step_started": plan.step_started,
            "reason": plan.reason,
        },
        "guardrails": [asdict(g) for g in spec.guardrails],
        "standby": None
        if spec.standby is None
        else {"release": r(spec.standby.release), "until": spec.standby.until},
        "preview": None if spec.preview is None else r(spec.preview),
    }


def from_json(d: Mapping[str, Any]) -> DeploymentSpec:
    rel = release_from
    plan = d.get("rollout")
    standby = d.get("standby")
    return DeploymentSpec(
        arms=tuple(Arm(rel(a["release"]), float(a["weight"])) for a in d["arms"]),
        sticky=d.get("sticky"),
        segments=tuple(
            Segment(dict(s["match"]), rel(s["release"]), s.get("name", ""))
            for s in d.get("segments", [])
        ),
        features=tuple(
            FeatureRoute(f["feature"], rel(f["release"])) for f in d.get("features", [])
        ),
        shadows=tuple(Shadow(rel(s["release"]), float(s["sample"])) for s in d.get("shadows", [])),
        rollout=None
        if plan is None
        else RolloutPlan(
            candidate=rel(plan["candidate"]),
            stable=rel(plan["stable"]),
            steps=tuple(float(s) for s in plan["steps"]),
            bake_s=float(plan["bake_s"]),
            step=int(plan["step"]),
            status=plan["status"],
            step_started=plan["step_started"],
            reason=plan.get("reason"),
        ),
        guardrails=tuple(Guardrail(**g) for g in d.get("guardrails", [])),
        standby=None if standby is None else Standby(rel(standby["release"]), standby["until"]),
        preview=None if d.get("preview") is None else rel(d["preview"]),
    )
