"""Per-release counters kept on the hot path, flushed as measurement windows to the store
and exposed in the Prometheus text format."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..deploy.stats import HIST_SIZE, LATENCY_BOUNDS_MS, bucket_of


def _hist() -> list[int]:
    return [0] * HIST_SIZE


@dataclass(slots=True)
class Counter:
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latency: list[int] = field(default_factory=_hist)
    shadow_compared: int = 0
    shadow_agreed: int = 0
    shadow_abs_diff_sum: float = 0.0
    shadow_abs_diff_max: float = 0.0
    shadow_errors: int = 0
    feedback_rows: int = 0
    feedback_correct: int = 0
    feedback_scored: int = 0
    feedback_abs_err_sum: float = 0.0


Key = tuple[int, str, str]  # deployment id, role (arm/shadow), release key


class Measurements:
    """Counters for the current flush period, plus running totals for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shadow_lock = threading.Lock()
        self._window: dict[Key, Counter] = {}
        self._totals: dict[tuple[str, str, str], Counter] = {}
        self.names: dict[int, str] = {}  # deployment id -> model name, for labels

    def _get(self, key: Key) -> tuple[Counter, Counter]:
        window = self._window.get(key)
        if window is None:
            with self._lock:
                window = self._window.setdefault(key, Counter())
        label = (self.names.get(key[0], str(key[0])), key[1], key[2])
        total = self._totals.get(label)
        if total is None:
            total = self._totals.setdefault(label, Counter())
        return window, total

    def served(self, key: Key, seconds: float, *, error: bool) -> None:
        b = bucket_of(seconds * 1000)
        for c in self._get(key):
            c.requests += 1
            c.errors += error
            c.latency[b] += 1

    def client_error(self, key: Key) -> None:
        for c in self._get(key):
            c.client_errors += 1

    def shadow(
        self, key: Key, seconds: float, compared: int, agreed: int, diffs: Sequence[float]
    ) -> None:
        b = bucket_of(seconds * 1000)
        # shadows finish on several threads at once: their updates take the lock
        with self._shadow_lock:
            self._shadow_update(key, b, compared, agreed, diffs)

    def _shadow_update(
        self, key: Key, b: int, compared: int, agreed: int, diffs: Sequence[float]
    ) -> None:
        for c in self._get(key):
            c.requests += 1
            c.latency[b] += 1
            c.shadow_compared += compared
            c.shadow_agreed += agreed
            if diffs:
                c.shadow_abs_diff_sum += sum(diffs)
                c.shadow_abs_diff_max = max(c.shadow_abs_diff_max, *diffs)

    def shadow_error(self, key: Key) -> None:
        with self._shadow_lock:
            for c in self._get(key):
                c.shadow_errors += 1

    def feedback(self, key: Key, rows: int, correct: int, errors: Sequence[float]) -> None:
        with self._shadow_lock:
            for c in self._get(key):
                c.feedback_rows += rows
                c.feedback_correct += correct
                c.feedback_scored += len(errors)
                c.feedback_abs_err_sum += sum(errors)

    def take(self) -> dict[Key, Counter]:
        """The current period's counters; a new period starts."""
        with self._lock:
            taken, self._window = self._window, {}
        return taken

    def prometheus(self, ready: bool, extra: dict[str, float]) -> str:
        lines = [
            "# HELP modelvault_gateway_ready 1 when the routing table is fresh",
            "# TYPE modelvault_gateway_ready gauge",
            f"modelvault_gateway_ready {1 if ready else 0}",
        ]
        for name, value in extra.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        series: dict[str, list[str]] = {
            "modelvault_requests_total": [],
            "modelvault_errors_total": [],
            "modelvault_client_errors_total": [],
            "modelvault_shadow_compared_total": [],
            "modelvault_shadow_agreed_total": [],
            "modelvault_shadow_errors_total": [],
            "modelvault_feedback_rows_total": [],
            "modelvault_feedback_correct_total": [],
            "modelvault_latency_seconds": [],
        }
        for (model, role, release), c in sorted(self._totals.items()):
            labels = f'model="{model}",role="{role}",release="{release}"'
            series["modelvault_requests_total"].append(f"{{{labels}}} {c.requests}")
            series["modelvault_errors_total"].append(f"{{{labels}}} {c.errors}")
            series["modelvault_client_errors_total"].append(f"{{{labels}}} {c.client_errors}")
            series["modelvault_shadow_compared_total"].append(f"{{{labels}}} {c.shadow_compared}")
            series["modelvault_shadow_agreed_total"].append(f"{{{labels}}} {c.shadow_agreed}")
            series["modelvault_shadow_errors_total"].append(f"{{{labels}}} {c.shadow_errors}")
            series["modelvault_feedback_rows_total"].append(f"{{{labels}}} {c.feedback_rows}")
            series["modelvault_feedback_correct_total"].append(f"{{{labels}}} {c.feedback_correct}")
            running = 0
            for bound, count in zip([*LATENCY_BOUNDS_MS, math.inf], c.latency, strict=True):
                running += count
                le = "+Inf" if bound == math.inf else f"{bound / 1000:g}"
                series["modelvault_latency_seconds"].append(
                    f'_bucket{{{labels},le="{le}"}} {running}'
                )
            series["modelvault_latency_seconds"].append(f"_count{{{labels}}} {running}")
        for name, rows in series.items():
            kind = "histogram" if name.endswith("seconds") else "counter"
            lines.append(f"# TYPE {name} {kind}")
            lines += [f"{name}{row}" for row in rows]
        return "\n".join(lines) + "\n"


def window_rows(
    taken: dict[Key, Counter], replica: str, since: datetime, until: datetime
) -> list[Any]:
    from ..service.rollouts import WindowRow

    return [
        WindowRow(
            deployment_id=dep,
            release=release,
            role=role,
            replica=replica,
            window_from=since,
            window_to=until,
            requests=c.requests,
            errors=c.errors,
            client_errors=c.client_errors,
            latency=tuple(c.latency),
            shadow_compared=c.shadow_compared,
            shadow_agreed=c.shadow_agreed,
            shadow_abs_diff_sum=c.shadow_abs_diff_sum,
            shadow_abs_diff_max=c.shadow_abs_diff_max,
            shadow_errors=c.shadow_errors,
            feedback_rows=c.feedback_rows,
            feedback_correct=c.feedback_correct,
            feedback_scored=c.feedback_scored,
            feedback_abs_err_sum=c.feedback_abs_err_sum,
        )
        for (dep, role, release), c in taken.items()
    ]
