"""Small models for deployment and gateway tests: scikit-learn (skops), a trusted Python
entry point that fails on purpose, and a registry with releases ready to deploy."""

from __future__ import annotations

from pathlib import Path

import skops.io
from sklearn.linear_model import LogisticRegression

from modelvault import Registry

ROWS = [[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [0.9, 1.1], [0.2, 0.1], [1.2, 0.8]]
LABELS = [0, 0, 1, 1, 0, 1]


def sklearn_dir(root: Path, name: str, c: float = 1.0) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    model = LogisticRegression(C=c).fit(ROWS, LABELS)
    skops.io.dump(model, d / "model.skops")
    return d


def python_dir(root: Path, name: str, source: str) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "entry.py").write_text(source)
    return d


def register_model(reg: Registry, tmp: Path, model: str, c: float) -> int:
    v = reg.register(
        model, sklearn_dir(tmp, f"{model}-{c}", c), capture_code=False, capture_environment=False
    )
    return v.number


def to_production(reg: Registry, approver: Registry, ref: str) -> None:
    reg.promote(ref, "staging")
    approver.approve(ref)


def trusted_policy(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[defaults]\napprovals = 1\ntrusted_code = true\n")
