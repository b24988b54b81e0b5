"""Guardrail rules: their text form, and judgments (relative to the stable release with a
floor, absolute latency from merged histograms, shadow agreement, inconclusive below the
minimum sample count)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelvault import InvalidInput
from modelvault.deploy.guardrails import judge, parse_guardrail
from modelvault.deploy.records import ArmStats
from modelvault.deploy.stats import HIST_SIZE, add, bucket_of, percentile

T0, T1 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold", "relative"),
    [
        ("error_rate > 2x baseline", "error_rate", ">", 2.0, True),
        ("error_rate>1.5*baseline", "error_rate", ">", 1.5, True),
        ("latency_p95 > 500ms", "latency_p95", ">", 500.0, False),
        ("latency_p99 >= 2s", "latency_p99", ">=", 2000.0, False),
        ("shadow_agreement < 0.97", "shadow_agreement", "<", 0.97, False),
        ("error_rate > 2%", "error_rate", ">", 0.02, False),
    ],
)
def test_rules_parse(text: str, metric: str, op: str, threshold: float, relative: bool) -> None:
    rule = parse_guardrail(text)
    assert (rule.metric, rule.op, rule.threshold, rule.relative) == (
        metric,
        op,
        pytest.approx(threshold),
        relative,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("errors > 2", "unknown metric"),
        ("error_rate 2", "METRIC OP VALUE"),
        ("shadow_agreement < 2x baseline", "has no baseline"),
        ("error_rate > 5ms", "not a time"),
    ],
)
def test_bad_rules_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_guardrail(text)


def test_relative_error_rate_uses_the_stable_arm_with_a_floor() -> None:
    rule = parse_guardrail("error_rate > 2x baseline")
    stable = ArmStats("m:1", requests=1000, errors=0)
    assert judge(rule, ArmStats("m:2", 200, 1), stable, T0, T1).verdict == "pass"  # 0.5 % < 1 %
    breach = judge(rule, ArmStats("m:2", 200, 60), stable, T0, T1)
    assert breach.verdict == "breach" and breach.limit == pytest.approx(0.01)
    assert breach.measured == pytest.approx(0.3) and breach.detail["baseline_value"] == 0.0
    noisy = ArmStats("m:1", requests=1000, errors=100)  # 10 % baseline: limit 20 %
    assert judge(rule, ArmStats("m:2", 200, 30), noisy, T0, T1).verdict == "pass"


def test_too_few_samples_is_inconclusive_never_a_breach() -> None:
    rule = parse_guardrail("error_rate > 2x baseline")
    result = judge(rule, ArmStats("m:2", 99, 99), None, T0, T1)
    assert result.verdict == "inconclusive" and result.samples == 99


def test_latency_percentiles_come_from_merged_histograms() -> None:
    fast, slow = [0] * HIST_SIZE, [0] * HIST_SIZE
    fast[bucket_of(2.0)] = 90
    slow[bucket_of(600.0)] = 10
    merged = add(fast, slow)
    assert percentile(merged, 0.5) == 2.0
    assert percentile(merged, 0.95) == 750.0  # the upper bound of 600 ms's bucket
    rule = parse_guardrail("latency_p95 > 500ms")
    stats = ArmStats("m:2", requests=100, p95_ms=percentile(merged, 0.95))
    assert judge(rule, stats, None, T0, T1).verdict == "breach"


def test_shadow_agreement_counts_compared_rows() -> None:
    rule = parse_guardrail("shadow_agreement < 0.97")
    ok = ArmStats("m:3", shadow_compared=1000, shadow_agreement=0.99)
    bad = ArmStats("m:3", shadow_compared=1000, shadow_agreement=0.9)
    assert judge(rule, ok, None, T0, T1).verdict == "pass"
    assert judge(rule, bad, None, T0, T1).verdict == "breach"


def test_offset_from_baseline_for_feedback_quality() -> None:
    rule = parse_guardrail("accuracy < baseline - 0.01")
    assert rule.offset and rule.threshold == pytest.approx(-0.01)
    stable = ArmStats("m:1", feedback_rows=500, accuracy=0.95)
    worse = judge(rule, ArmStats("m:2", feedback_rows=200, accuracy=0.90), stable, T0, T1)
    assert worse.verdict == "breach" and worse.limit == pytest.approx(0.94)
    same = judge(rule, ArmStats("m:2", feedback_rows=200, accuracy=0.945), stable, T0, T1)
    assert same.verdict == "pass"
    thin = ArmStats("m:1", feedback_rows=20, accuracy=0.99)  # baseline below min_samples
    assert judge(
        rule, ArmStats("m:2", 0, feedback_rows=200, accuracy=0.5), thin, T0, T1
    ).verdict == ("inconclusive")
    with pytest.raises(InvalidInput, match="no baseline"):
        parse_guardrail("shadow_agreement < baseline - 0.1")
