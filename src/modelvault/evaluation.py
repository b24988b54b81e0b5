"""Evaluation arithmetic: reading an evaluation set's examples, built-in metrics, latency
percentiles and how far two outputs are apart. Pure functions; no store access.

An evaluation set is a snapshot holding one data file: CSV with a header row, JSON Lines of
objects, or a JSON list of objects. The label column is ``label`` unless told otherwise; the
other columns, in file order, are the inputs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput

DATA_SUFFIXES = (".csv", ".jsonl", ".json")
MAX_EXAMPLES = 1_000_000


@dataclass(frozen=True, slots=True)
class Examples:
    columns: tuple[str, ...]
    inputs: list[list[Any]]
    labels: list[Any]


def _cell(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return (
        int(number)
        if number.is_integer() and "." not in text and "e" not in text.lower()
        else number
    )


def _data_file(root: Path) -> Path:
    if root.is_file():
        return root
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    if len(found) != 1:
        raise InvalidInput(
            f"an evaluation set must hold exactly one data file ({', '.join(DATA_SUFFIXES)}); "
            f"found {len(found)}",
            field="eval_set",
        )
    return found[0]


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise InvalidInput(f"cannot read evaluation data {path.name}: {exc}") from None
    if not isinstance(data, list):
        raise InvalidInput(f"{path.name} must hold a JSON list of objects", field="eval_set")
    return data


def load_examples(root: Path, label: str = "label") -> Examples:
    path = _data_file(root)
    records = _records(path)
    if not records:
        raise InvalidInput(f"evaluation data {path.name} holds no examples", field="eval_set")
    if len(records) > MAX_EXAMPLES:
        raise InvalidInput(f"evaluation sets are limited to {MAX_EXAMPLES} examples")
    first = records[0]
    if not isinstance(first, dict) or label not in first:
        raise InvalidInput(
            f"evaluation data {path.name} has no label column {label!r}", field="label_column"
        )
    columns = tuple(k for k in first if k != label)
    inputs, labels = [], []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or set(rec) != set(first):
            raise InvalidInput(f"example {i} of {path.name} does not have the columns of the first")
        inputs.append([rec[c] for c in columns])
        labels.append(rec[label])
    return Examples(columns, inputs, labels)


# -- metrics ------------------------------------------------------------------------------------


def _score(output: Any) -> float:
    """A positive-class score from an output: a number, or the last of a probability row."""
    if isinstance(output, list | tuple):
        output = output[-1]
    return float(output)


def _binary(labels: Sequence[Any]) -> bool:
    return {str(v) for v in labels} <= {"0", "1", "0.0", "1.0", "True", "False"}


def _bit(value: Any) -> str:
    return "1" if str(value) in ("1", "1.0", "True") else "0"


def _classes(labels: Sequence[Any], outputs: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Labels and outputs as class names; binary scores (floats) are cut at 0.5."""
    if _binary(labels):
        decided = [
            _bit(int(_score(o) >= 0.5)) if isinstance(o, float | list | tuple) else _bit(o)
            for o in outputs
        ]
        return [_bit(y) for y in labels], decided
    return [str(y) for y in labels], [str(o) for o in outputs]


def accuracy(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    ys, ps = _classes(labels, outputs)
    return sum(y == p for y, p in zip(ys, ps, strict=True)) / len(ys)


def _prf(labels: Sequence[Any], outputs: Sequence[Any]) -> tuple[float, float, float]:
    """Precision, recall and F1: of class 1 for binary labels, else macro-averaged."""
    ys, ps = _classes(labels, outputs)
    classes = ["1"] if _binary(labels) else sorted(set(ys))
    scores = []
    for c in classes:
        tp = sum(y == c and p == c for y, p in zip(ys, ps, strict=True))
        fp = sum(y != c and p == c for y, p in zip(ys, ps, strict=True))
        fn = sum(y == c and p != c for y, p in zip(ys, ps, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append((precision, recall, f1))
    n = len(scores)
    return (
        sum(s[0] for s in scores) / n,
        sum(s[1] for s in scores) / n,
        sum(s[2] for s in scores) / n,
    )


def auc(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    """Area under the ROC curve for binary labels, by ranks (ties share their mean rank)."""
    if not _binary(labels):
        raise InvalidInput("auc needs binary labels (0/1)", field="metrics")
    pairs = sorted((_score(o), int(_bit(y))) for y, o in zip(labels, outputs, strict=True))
    positives = sum(y for _, y in pairs)
    negatives = len(pairs) - positives
    if not positives or not negatives:
        raise InvalidInput("auc needs both classes among the labels", field="metrics")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += mean_rank * sum(y for _, y in pairs[i : j + 1])
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def logloss(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    eps = 1e-15
    total = 0.0
    for y, o in zip(labels, outputs, strict=True):
        p = min(max(_score(o), eps), 1 - eps)
        total += -math.log(p) if _bit(y) == "1" else -math.log(1 - p)
    return total / len(labels)


def _errors(labels: Sequence[Any], outputs: Sequence[Any]) -> list[float]:
    return [float(o) - float(y) for y, o in zip(labels, outputs, strict=True)]


def mae(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    return sum(abs(e) for e in _errors(labels, outputs)) / len(labels)


def mse(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    return sum(e * e for e in _errors(labels, outputs)) / len(labels)


def rmse(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    return math.sqrt(mse(labels, outputs))


def r2(labels: Sequence[Any], outputs: Sequence[Any]) -> float:
    ys = [float(y) for y in labels]
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    residual = sum(e * e for e in _errors(labels, outputs))
    if not total:  # constant labels: perfect if the outputs match them, else no skill
        return 1.0 if not residual else 0.0
    return 1 - residual / total


MetricFn = Callable[[Sequence[Any], Sequence[Any]], float]

METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "precision": lambda y, o: _prf(y, o)[0],
    "recall": lambda y, o: _prf(y, o)[1],
    "f1": lambda y, o: _prf(y, o)[2],
    "auc": auc,
    "logloss": logloss,
    "mae": mae,
    "mse": mse,
    "rmse": rmse,
    "r2": r2,
}


def default_metrics(labels: Sequence[Any]) -> list[str]:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels)
    if _binary(labels):
        return ["accuracy", "f1"]
    if numeric and len({float(v) for v in labels}) > 20:
        return ["rmse", "mae"]
    return ["accuracy", "f1"]


def compute(
    names: Sequence[str] | Mapping[str, MetricFn], labels: Sequence[Any], outputs: Sequence[Any]
) -> dict[str, float]:
    if len(labels) != len(outputs):
        raise InvalidInput(
            f"{len(outputs)} outputs for {len(labels)} examples; give one output per example",
            field="outputs",
        )
    fns: Mapping[str, MetricFn]
    if isinstance(names, Mapping):
        fns = names
    else:
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise InvalidInput(
                f"unknown metric {unknown[0]!r}; built in: {', '.join(METRICS)} "
                "(or pass a mapping of name to function)",
                field="metrics",
            )
        fns = {n: METRICS[n] for n in names}
    out = {}
    for name, fn in fns.items():
        try:
            out[name] = float(fn(labels, outputs))
        except InvalidInput:
            raise
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise InvalidInput(
                f"metric {name!r} cannot be computed on these outputs: {exc}"
            ) from None
    return out


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 with linear interpolation between closest ranks."""
    if not samples_ms:
        return {}
    ordered = sorted(samples_ms)

    def q(p: float) -> float:
        pos = (len(ordered) - 1) * p
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99)}


def distance(a: Any, b: Any) -> float:
    """How far apart two outputs are: |a - b| for numbers, 0 or 1 otherwise."""
    try:
        return abs(_score(a) - _score(b))
    except (TypeError, ValueError):
        return 0.0 if a == b else 1.0


def plain(value: Any) -> Any:
    """An output as plain JSON data (NumPy scalars and arrays become numbers and lists)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
