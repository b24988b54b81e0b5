"""Guardrail rules: their text form (``error_rate > 2x baseline``, ``latency_p95 > 500ms``,
``shadow_agreement < 0.97``) and how one is judged against measured windows.

Below the minimum sample count a rule is *inconclusive*, never a breach. A relative rule
compares with the stable release in the same window; its baseline is floored (``FLOORS``) so
that a stable release with no errors does not turn one canary error into a breach.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime

from ..errors import InvalidInput
from .records import ArmStats, Guardrail, GuardrailResult

METRICS = {
    "error_rate": "errors / requests of the release",
    "latency_p50": "median latency, ms",
    "latency_p95": "95th percentile latency, ms",
    "latency_p99": "99th percentile latency, ms",
    "shadow_agreement": "share of shadowed requests whose outputs agree with the served one",
    "shadow_mean_abs_diff": "mean absolute difference of shadow and served scores",
}
FLOORS = {"error_rate": 0.005, "latency_p50": 1.0, "latency_p95": 1.0, "latency_p99": 1.0}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_RULE = re.compile(
    r"^\s*(?P<metric>[a-z_0-9]+)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?:(?P<factor>\d+(?:\.\d+)?)\s*[x*]\s*baseline|(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%)?)"
    r"\s*$"
)


def parse_guardrail(text: str) -> Guardrail:
    match = _RULE.match(text)
    if match is None:
        raise InvalidInput(
            f"guardrail {text!r}: write METRIC OP VALUE, e.g. 'error_rate > 2x baseline', "
            "'latency_p95 > 500ms', 'shadow_agreement < 0.97'",
            field="guardrails",
        )
    metric = match.group("metric")
    if metric not in METRICS:
        raise InvalidInput(
            f"guardrail {text!r}: unknown metric {metric!r} (known: {', '.join(METRICS)})",
            field="guardrails",
        )
    relative = match.group("factor") is not None
    if relative:
        threshold = float(match.group("factor"))
        if metric not in FLOORS:
            raise InvalidInput(
                f"guardrail {text!r}: {metric} has no baseline; give a number", field="guardrails"
            )
    else:
        threshold = float(match.group("value"))
        unit = match.group("unit")
        if unit == "%":
            threshold /= 100
        if unit == "s":
            threshold *= 1000
        if unit in ("ms", "s") and not metric.startswith("latency"):
            raise InvalidInput(f"guardrail {text!r}: {metric} is not a time", field="guardrails")
    rule = " ".join(text.split())
    return Guardrail(rule, metric, match.group("op"), threshold, relative)


def _value(stats: ArmStats, metric: str) -> float | None:
    if metric == "error_rate":
        return stats.error_rate
    if metric == "shadow_agreement":
        return stats.shadow_agreement
    if metric == "shadow_mean_abs_diff":
        return stats.shadow_mean_abs_diff
    return {"latency_p50": stats.p50_ms, "latency_p95": stats.p95_ms, "latency_p99": stats.p99_ms}[
        metric
    ]


def judge(
    rule: Guardrail,
    candidate: ArmStats,
    baseline: ArmStats | None,
    window_from: datetime,
    window_to: datetime,
) -> GuardrailResult:
    shadow = rule.metric.startswith("shadow_")
    samples = candidate.shadow_compared if shadow else candidate.requests
    measured = _value(candidate, rule.metric)
    limit: float | None = rule.threshold
    detail: dict[str, object] = {"release": candidate.release}
    if rule.relative:
        base = _value(baseline, rule.metric) if baseline is not None else None
        floor = FLOORS[rule.metric]
        limit = rule.threshold * max(base or 0.0, floor)
        detail.update(
            baseline_release=baseline.release if baseline else None,
            baseline_value=base,
            baseline_requests=baseline.requests if baseline else 0,
            factor=rule.threshold,
            floor=floor,
        )
    if samples < rule.min_samples or measured is None:
        verdict = "inconclusive"
    else:
        verdict = (
            "breach"
            if _OPS[rule.op](measured, rule.threshold if limit is None else limit)
            else "pass"
        )
    return GuardrailResult(
        rule=rule.rule,
        verdict=verdict,
        measured=measured,
        limit=limit,
        samples=samples,
        window_s=rule.window_s,
        window_from=window_from,
        window_to=window_to,
        detail=detail,
    )
