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
    "accuracy": "share of rows whose served label matched the label sent as feedback",
    "mean_abs_error": "mean absolute difference of served scores and feedback scores",
}
# metrics a rule may compare with the stable release's value (``baseline``)
BASELINED = {
    "error_rate",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "accuracy",
    "mean_abs_error",
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
    r"(?:(?P<factor>\d+(?:\.\d+)?)\s*[x*]\s*baseline"
    r"|baseline\s*(?P<sign>[+-])\s*(?P<offset>\d+(?:\.\d+)?)"
    r"|(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%)?)"
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
    offset = match.group("offset") is not None
    if relative:
        threshold = float(match.group("factor"))
        if metric not in FLOORS:
            raise InvalidInput(
                f"guardrail {text!r}: {metric} has no baseline to multiply; give a number "
                "or baseline - D",
                field="guardrails",
            )
    elif offset:
        threshold = float(match.group("offset")) * (-1 if match.group("sign") == "-" else 1)
        if metric not in BASELINED:
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
    return Guardrail(rule, metric, match.group("op"), threshold, relative, offset=offset)


def _value(stats: ArmStats, metric: str) -> float | None:
    values = {
        "error_rate": stats.error_rate,
        "shadow_agreement": stats.shadow_agreement,
        "shadow_mean_abs_diff": stats.shadow_mean_abs_diff,
        "accuracy": stats.accuracy,
        "mean_abs_error": stats.mean_abs_error,
        "latency_p50": stats.p50_ms,
        "latency_p95": stats.p95_ms,
        "latency_p99": stats.p99_ms,
    }
    return values[metric]


def _samples(stats: ArmStats, metric: str) -> int:
    if metric.startswith("shadow_"):
        return stats.shadow_compared
    if metric == "accuracy":
        return stats.feedback_rows
    if metric == "mean_abs_error":
        return stats.feedback_scored
    return stats.requests


def judge(
    rule: Guardrail,
    candidate: ArmStats,
    baseline: ArmStats | None,
    window_from: datetime,
    window_to: datetime,
) -> GuardrailResult:
    samples = _samples(candidate, rule.metric)
    measured = _value(candidate, rule.metric)
    limit: float | None = rule.threshold
    detail: dict[str, object] = {"release": candidate.release}
    base = None
    if rule.relative:
        base = _value(baseline, rule.metric) if baseline is not None else None
        floor = FLOORS[rule.metric]
        limit = rule.threshold * max(base or 0.0, floor)
        detail.update(factor=rule.threshold, floor=floor)
    elif rule.offset:
        # the stable release's value must itself rest on enough samples
        base = _value(baseline, rule.metric) if baseline is not None else None
        base_samples = _samples(baseline, rule.metric) if baseline is not None else 0
        limit = None if base is None or base_samples < rule.min_samples else base + rule.threshold
        detail.update(offset=rule.threshold, baseline_samples=base_samples)
    if rule.relative or rule.offset:
        detail.update(
            baseline_release=baseline.release if baseline else None,
            baseline_value=base,
            baseline_requests=baseline.requests if baseline else 0,
        )
    if samples < rule.min_samples or measured is None or limit is None:
        verdict = "inconclusive"
    else:
        verdict = "breach" if _OPS[rule.op](measured, limit) else "pass"
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
