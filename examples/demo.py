"""The `make demo` story on the embedded default (SQLite + local blobs, no server).

Trains two real scikit-learn models on a dataset that ships with scikit-learn, registers
them, promotes through staging to production with an approval by a second person, diffs
them, rolls back, then prints and verifies the audit trail. Every step is the real CLI.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def train(out: Path, data_dir: Path, *, c: float, seed: int) -> dict[str, float]:
    """Fit a logistic regression on the breast-cancer data set; save it with skops."""
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    np.savetxt(data_dir / "breast_cancer.csv", np.column_stack([x, y]), delimiter=",", fmt="%.6g")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
    model.fit(x_tr, y_tr)
    out.mkdir(parents=True, exist_ok=True)
    sio.dump(model, out / "model.skops")
    proba = model.predict_proba(x_te)[:, 1]
    return {
        "auc": round(float(roc_auc_score(y_te, proba)), 4),
        "accuracy": round(float(accuracy_score(y_te, model.predict(x_te))), 4),
    }


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="modelvault-demo-"))
    env = {
        **os.environ,
        "MODELVAULT_HOME": str(work / "home"),
        "MODELVAULT_ACTOR": "alice",
        "COLUMNS": os.environ.get("COLUMNS", "150"),
    }
    env.pop("MODELVAULT_DB", None)
    env.pop("MODELVAULT_BLOBS", None)

    def mv(*args: str, actor: str | None = None) -> None:
        shown = " ".join(shlex.quote(a) for a in args)
        who = f"[{actor or 'alice'}] "
        print(f"\n{who}$ modelvault {shown}", flush=True)
        run_env = {**env, "MODELVAULT_ACTOR": actor} if actor else env
        subprocess.run([sys.executable, "-m", "modelvault", *args], env=run_env, check=True)

    print(f"demo registry: {work / 'home'}")
    data = work / "data"
    m1 = train(work / "v1", data, c=0.01, seed=7)
    m2 = train(work / "v2", data, c=1.0, seed=7)
    print(f"trained v1 {m1} and v2 {m2}")

    mv("init")
    for label, path, c, metrics in (("1.0.0", "v1", 0.01, m1), ("1.1.0", "v2", 1.0, m2)):
        mv(
            "register",
            "fraud-detector",
            str(work / path),
            "--label",
            label,
            "--param",
            f"C={c}",
            "--param",
            "solver=lbfgs",
            "--metric",
            f"auc={metrics['auc']}",
            "--metric",
            f"accuracy={metrics['accuracy']}",
            "--tag",
            "team=risk",
            "--dataset",
            f"train={data}",
            "--seed",
            "7",
            "--description",
            "logistic regression on breast-cancer features",
        )
    mv("versions", "fraud-detector")
    mv("promote", "fraud-detector:1", "--to", "staging")
    mv("approve", "fraud-detector:1", "--comment", "validated on holdout", actor="bob")
    mv("promote", "fraud-detector:1", "--to", "production", "--reason", "first launch")
    mv("promote", "fraud-detector:2", "--to", "staging")
    mv("approve", "fraud-detector:2", "--comment", "higher AUC", actor="bob")
    mv("promote", "fraud-detector:2", "--to", "production", "--reason", "better AUC")
    mv("diff", "fraud-detector:1", "fraud-detector:2")
    mv("search", 'metrics.auc > 0.9 and tags.team = "risk"')
    mv("rollback", "fraud-detector", "--reason", "false positives up in the first hour")
    mv("show", "fraud-detector@production")
    mv("pull", "fraud-detector@production", str(work / "pulled"))
    mv("audit")
    mv("audit", "verify")
    print(f"\ndemo finished; its registry is left at {work / 'home'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
