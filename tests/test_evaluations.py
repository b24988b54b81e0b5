"""Evaluation reports, built-in metrics, behavioural compare, lineage and feature-pipeline
coupling, on real scikit-learn models."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import skops.io
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelvault import Conflict, Forbidden, InvalidInput, NotFound, Registry
from modelvault.evaluation import METRICS, percentiles

from .clitool import CLI


def write_eval_set(path: Path, rows: int = 120) -> tuple[Any, Any]:
    data = load_breast_cancer()
    X, y = data.data[:, :4], data.target
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["a", "b", "c", "d", "label"])
        for features, label in zip(X[-rows:], y[-rows:], strict=True):
            out.writerow([*features.tolist(), int(label)])
    return X[:-rows], y[:-rows]


def save_model(model: Any, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, directory / "model.skops")
    return directory


@pytest.fixture
def two_versions(reg: Registry, tmp_path: Path) -> Path:
    eval_file = tmp_path / "eval" / "claims.csv"
    X, y = write_eval_set(eval_file)
    strong = LogisticRegression(max_iter=5000).fit(X, y)
    weak = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
    reg.register("fraud", save_model(weak, tmp_path / "weak"))
    reg.register("fraud", save_model(strong, tmp_path / "strong"))
    reg.snapshot(eval_file.parent, name="claims-eval", store=True)
    return eval_file


def test_evaluate_runs_the_version_and_records_a_report(reg: Registry, two_versions: Path) -> None:
    report = reg.evaluate("fraud:2", "claims-eval", metrics=["accuracy", "f1", "auc"])
    assert report.examples == 120
    assert set(report.metrics) == {"accuracy", "f1", "auc"}
    assert 0.5 < report.metrics["accuracy"] <= 1
    assert set(report.latency_ms) == {"p50", "p95", "p99"}
    assert report.latency_ms["p50"] <= report.latency_ms["p95"] <= report.latency_ms["p99"]
    assert report.eval_set == reg.get_snapshot("claims-eval").digest
    lines = reg._ctx.blobs.read_bytes(report.outputs_digest or "").decode().splitlines()
    assert len(lines) == 120 and set(json.loads(lines[0])) == {"i", "label", "output"}
    assert [r.digest for r in reg.evaluations("fraud:2")] == [report.digest]
    assert reg.audit(action="eval.record")[-1].after["report"] == report.digest  # type: ignore[index]


def test_evaluate_with_a_predict_function_and_given_outputs(
    reg: Registry, two_versions: Path
) -> None:
    calls: list[int] = []

    def predict(batch: Any) -> list[int]:
        calls.append(len(batch))
        return [1] * len(batch)

    report = reg.evaluate("fraud:1", "claims-eval", predict_fn=predict, batch_size=50)
    assert calls == [50, 50, 20]
    given_outputs = reg.evaluate("fraud:1", "claims-eval", outputs=[1] * 120)
    assert given_outputs.metrics == report.metrics
    assert given_outputs.latency_ms == {}
    with pytest.raises(InvalidInput, match="119 outputs for 120 examples"):
        reg.evaluate("fraud:1", "claims-eval", outputs=[1] * 119)
    with pytest.raises(InvalidInput, match="unknown metric 'acc'"):
        reg.evaluate("fraud:1", "claims-eval", metrics=["acc"])


def test_report_on_an_outdated_set_says_so(
    reg: Registry, two_versions: Path, tmp_path: Path
) -> None:
    old = reg.evaluate("fraud:2", "claims-eval", metrics=["accuracy"])
    assert not old.outdated
    write_eval_set(two_versions, rows=100)  # the set changes: a new snapshot of the same name
    reg.snapshot(two_versions.parent, name="claims-eval", store=True)
    assert reg.evaluations("fraud:2")[0].outdated


def test_evaluation_set_that_does_not_exist(reg: Registry, two_versions: Path) -> None:
    with pytest.raises(NotFound, match="no snapshot"):
        reg.evaluate("fraud:1", "sha256:" + "1" * 64)
    with pytest.raises(NotFound):
        reg.record_evaluation("fraud:1", "sha256:" + "1" * 64, metrics={"auc": 0.9})


def test_behavioural_compare(reg: Registry, two_versions: Path) -> None:
    result = reg.compare("fraud:1", "fraud:2", eval_set="claims-eval", top=5)
    assert result.examples == 120
    assert 0 < result.agreement < 1
    assert len(result.changed) == 5
    assert all(c.a != c.b for c in result.changed)
    a, b, delta = result.metrics["accuracy"]
    assert a is not None and b is not None and delta == pytest.approx(b - a)
    # the compare recorded the reports it needed, and reuses them next time
    assert len(reg.evaluations("fraud:1")) == 1
    reg.compare("fraud:1", "fraud:2", eval_set="claims-eval")
    assert len(reg.evaluations("fraud:1")) == 1


def test_pickle_is_refused_unless_trusted(reg: Registry, tmp_path: Path) -> None:
    import pickle

    d = tmp_path / "p"
    d.mkdir()
    (d / "model.pkl").write_bytes(pickle.dumps(LogisticRegression()))
    reg.register("pickled", d, flavor="pickle")
    with pytest.raises(Forbidden, match="pickle"):
        reg.load_model("pickled:1")
    assert reg.load_model("pickled:1", trusted=True).flavor == "pickle"


def test_feature_pipeline_coupling(reg: Registry, two_versions: Path, tmp_path: Path) -> None:
    reg.register("features", tmp_path / "weak")
    reg.register("features", tmp_path / "strong")
    reg.register("fraud", tmp_path / "strong", feature_pipeline="features:1")
    reg.register("fraud", tmp_path / "strong", feature_pipeline="features:2")
    assert reg.load_model("fraud:3", feature_pipeline="features:1").flavor == "sklearn"
    with pytest.raises(Conflict, match="trained with feature pipeline features:1"):
        reg.load_model("fraud:3", feature_pipeline="features:2")
    with pytest.raises(Conflict, match="none declared"):
        reg.load_model("fraud:1", feature_pipeline="features:2")
    d = reg.diff("fraud:3", "fraud:4")
    assert d.pipeline_changed
    assert [(c.a, c.b) for c in d.feature_pipeline] == [("features:1", "features:2")]
    assert not reg.diff("fraud:1", "fraud:2").pipeline_changed


def test_lineage_upstream_and_downstream(reg: Registry, two_versions: Path, tmp_path: Path) -> None:
    import modelvault

    with reg.start_run(experiment="fraud") as run:
        run.use_dataset(tmp_path / "eval", role="train", name="train-data")
        run.log_params({"C": 1.0})
        base = run.register_model("fraud", tmp_path / "strong")
    tuned = reg.register("fraud", tmp_path / "weak", parents=[f"fraud:{base.number}"])
    reg.evaluate(str(base), "claims-eval", metrics=["accuracy"])
    graph = reg.lineage(str(base))
    kinds = {n.kind for n in graph.upstream}
    assert {"run", "dataset", "report"} <= kinds
    assert [n.id for n in graph.downstream] == [tuned.ref]
    up = reg.lineage(str(tuned))
    parent = next(n for n in up.upstream if n.kind == "version")
    assert parent.id == base.ref and any(c.kind == "run" for c in parent.children)
    events = reg.openlineage(str(base))
    assert events[0]["eventType"] == "COMPLETE"
    assert events[0]["run"]["runId"].replace("-", "") == run.id
    assert events[0]["outputs"][0]["name"] == f"fraud:{base.number}"
    assert events[0]["inputs"][0]["facets"]["version"]["datasetVersion"].startswith("sha256:")
    assert modelvault.active_run() is None


def test_cli_eval_compare_lineage(cli: CLI, two_versions: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"metrics": {"auc": 0.91}, "latency_ms": {"p95": 12.5}}))
    report = cli.json(
        "eval", "record", "fraud:1", "--eval-set", "claims-eval", "--metrics", str(metrics)
    )
    assert report["metrics"] == {"auc": 0.91} and report["latency_ms"] == {"p95": 12.5}
    listed = cli.json("eval", "list", "fraud:1")
    assert [r["digest"] for r in listed] == [report["digest"]]
    bad = tmp_path / "bad.json"
    bad.write_text('{"metrics": {"auc": "high"}}')
    code, _, err = cli.run(
        "eval", "record", "fraud:1", "--eval-set", "claims-eval", "--metrics", str(bad)
    )
    assert code == 2 and "metric 'auc' must be a number" in err
    compared = cli.json("compare", "fraud:1", "fraud:2", "--eval-set", "claims-eval")
    assert compared["examples"] == 120 and 0 <= compared["agreement"] <= 1
    tree = cli.json("lineage", "fraud:2")
    assert tree["root"] == "default/fraud:2"
    code, out, _ = cli.run("lineage", "fraud:2", "--format", "openlineage")
    assert code == 0 and json.loads(out)[0]["job"]["name"] == "fraud"


def test_percentiles() -> None:
    assert percentiles([]) == {}
    assert percentiles([5.0]) == {"p50": 5.0, "p95": 5.0, "p99": 5.0}
    p = percentiles([float(i) for i in range(1, 101)])
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)


labels_and_scores = st.lists(
    st.tuples(st.integers(0, 1), st.floats(0, 1, allow_nan=False)), min_size=2, max_size=60
).filter(lambda rows: len({y for y, _ in rows}) == 2)


@settings(max_examples=60, deadline=None)
@given(labels_and_scores)
def test_builtin_metrics_agree_with_scikit_learn(rows: list[tuple[int, float]]) -> None:
    y = [r[0] for r in rows]
    scores = [r[1] for r in rows]
    decided = [int(s >= 0.5) for s in scores]
    assert METRICS["auc"](y, scores) == pytest.approx(skm.roc_auc_score(y, scores))
    assert METRICS["accuracy"](y, scores) == pytest.approx(skm.accuracy_score(y, decided))
    assert METRICS["f1"](y, scores) == pytest.approx(skm.f1_score(y, decided, zero_division=0))
    assert METRICS["precision"](y, scores) == pytest.approx(
        skm.precision_score(y, decided, zero_division=0)
    )
    clipped = [min(max(s, 1e-15), 1 - 1e-15) for s in scores]
    assert METRICS["logloss"](y, scores) == pytest.approx(skm.log_loss(y, clipped))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=2, max_size=40))
def test_regression_metrics_agree_with_scikit_learn(rows: list[tuple[float, float]]) -> None:
    y = [r[0] for r in rows]
    p = [r[1] for r in rows]
    assert METRICS["mae"](y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert METRICS["mse"](y, p) == pytest.approx(skm.mean_squared_error(y, p))
    if len(set(y)) > 1:
        assert METRICS["r2"](y, p) == pytest.approx(skm.r2_score(y, p), abs=1e-9)
