"""The worked example of docs/tracking.md: snapshot the data, train under autolog, register
from the run, evaluate on a pinned evaluation set, pass a gate, and read the lineage.

Run it with `python examples/tracking.py`; it works in a temporary registry it names.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import modelvault
from modelvault.tracking.api import set_default_registry


def write_csv(path: Path, X: object, y: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([f"f{i}" for i in range(8)] + ["label"])
        for row, label in zip(X, y, strict=True):  # type: ignore[call-overload]
            out.writerow([*row[:8].tolist(), int(label)])


def main(home: Path) -> None:
    work = home.parent
    alice = modelvault.Registry(home, actor="alice")
    bob = modelvault.Registry(home, actor="bob")
    set_default_registry(alice)

    # 1. Data: training and evaluation sets, snapshotted by content.
    data = load_breast_cancer()
    X_train, X_eval, y_train, y_eval = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0
    )
    write_csv(work / "data" / "train" / "claims.csv", X_train, y_train)
    write_csv(work / "data" / "eval" / "claims.csv", X_eval, y_eval)
    train = modelvault.snapshot(work / "data" / "train", name="claims-train")
    eval_set = modelvault.snapshot(work / "data" / "eval", name="claims-eval", store=True)

    # 2. Train under autolog: params, duration, score and the model are logged for us.
    modelvault.autolog()
    modelvault.seed_everything(42)
    with modelvault.start_run(experiment="fraud", name="baseline") as run:
        run.use_dataset(train, role="train")
        model = LogisticRegression(C=0.5, max_iter=5000).fit(X_train[:, :8], y_train)
        for epoch, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("loss", loss, step=epoch)
        version = run.register_model("fraud-detector")  # the autologged model/
    print(f"registered {version} from run {run.id[:12]} (seed {version.environment.seed})")  # type: ignore[union-attr]

    # 3. Evaluate on the pinned evaluation set: metrics, latency, per-example outputs.
    report = alice.evaluate(
        str(version),
        eval_set,
        predict_fn=lambda rows: model.predict_proba(rows)[:, 1],
        metrics=["auc", "accuracy", "f1"],
    )
    print(
        f"report {report.digest[:19]}: auc={report.metrics['auc']:.3f}, "
        f"p95={report.latency_ms['p95']:.2f} ms"
    )

    # 4. A gate: the policy asks for an auc and a report on claims-eval.
    alice.settings.policy.write_text(
        '[defaults.gates.production]\neval_set = "claims-eval"\n'
        'rules = ["auc >= 0.95", "p95_latency_ms <= 50"]\n'
    )
    alice.promote(str(version), "staging")
    bob.approve(str(version), comment="numbers checked")
    gate = alice.check_gate(str(version), "production")
    for check in gate.checks:
        print(f"  {check.rule:<28} {check.actual:<30} {'pass' if check.passed else 'FAIL'}")
    if gate.passed:
        alice.promote(str(version), "production", reason="first launch")

    # 5. Lineage: where the production model came from.
    graph = alice.lineage("fraud-detector@production")
    print(graph.root, "<-", ", ".join(f"{n.kind} {n.id[:24]}" for n in graph.upstream))
    set_default_registry(None)
    modelvault.autolog(disable=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="mv-tracking-") as tmp:
        main(Path(tmp) / "home")
