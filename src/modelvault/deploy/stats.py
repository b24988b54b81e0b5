"""Latency histograms and window sums shared by the gateway (which counts) and the control
plane (which judges): fixed bucket bounds, so histograms from many replicas add up."""

from __future__ import annotations

from collections.abc import Sequence

# upper bounds in ms; the last bucket is everything slower
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    0.25,
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    25,
    50,
    75,
    100,
    150,
    250,
    500,
    750,
    1000,
    2500,
    5000,
    10000,
)
HIST_SIZE = len(LATENCY_BOUNDS_MS) + 1


def bucket_of(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS)


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The upper bound of the bucket holding the *q* quantile (a conservative estimate)."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= rank and count:
            return LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else float("inf")
    return float("inf")


def add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    if len(a) < len(b):
        a, b = b, a
    out = list(a)
    for i, v in enumerate(b):
        out[i] += v
    return out
