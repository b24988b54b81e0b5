"""Autologging a real scikit-learn model: every captured field reaches the registered version."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelvault
from modelvault import Registry
from modelvault.tracking.api import set_default_registry


@pytest.fixture
def autologged(reg: Registry) -> Iterator[Registry]:
    set_default_registry(reg)
    modelvault.autolog()
    yield reg
    modelvault.autolog(disable=True)
    set_default_registry(None)


def git_repo(path: Path) -> str:
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (path / "train.py").write_text("# training code\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "train"], check=True)
    out = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_autologged_training_reaches_the_version(autologged: Registry, tmp_path: Path) -> None:
    commit = git_repo(tmp_path / "repo")
    X, y = load_iris(return_X_y=True)
    modelvault.seed_everything(1234)
    with modelvault.start_run(experiment="iris", code_dir=tmp_path / "repo") as run:
        RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
        version = run.register_model("iris")
    assert version.params["n_estimators"] == 5 and version.params["max_depth"] == 3
    assert version.params["random_state"] == 0
    assert 0.8 < version.metrics["training_score"] <= 1.0
    assert version.metrics["training_duration_s"] > 0
    assert version.code is not None and version.code.commit == commit
    assert version.code.branch == "main" and not version.code.dirty
    env = version.environment
    assert env is not None and env.seed == 1234
    packages = autologged._ctx.blobs.read_bytes(env.packages_digest or "")
    assert f'"scikit-learn":"{metadata.version("scikit-learn")}"'.encode() in packages
    assert version.flavor == "sklearn" and version.run_id == run.id
    assert version.tags["estimator_class"].endswith("RandomForestClassifier")
    # the registered model is the fitted one, loadable without pickle
    loaded = autologged.load_model(str(version))
    assert loaded.predict(X[:5].tolist()) == [0, 0, 0, 0, 0]


def test_fit_without_a_run_gets_its_own(autologged: Registry) -> None:
    X, y = load_iris(return_X_y=True)
    LogisticRegression(max_iter=500).fit(X, y)
    (run,) = autologged.runs()
    assert run.status == "finished" and run.experiment == "default"
    assert autologged.get_run(run.id).params["max_iter"] == 500


def test_inner_fits_are_not_logged_and_later_fits_nest(autologged: Registry) -> None:
    X, y = load_iris(return_X_y=True)
    with modelvault.start_run(experiment="search") as run:
        search = GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            {"logisticregression__C": [0.1, 1.0]},
            cv=2,
        )
        search.fit(X, y)  # dozens of inner fits, one logged
        LogisticRegression(C=0.5, max_iter=500).fit(X, y)  # a second fit: a nested run
    runs = autologged.runs(experiment="search")
    assert len(runs) == 2
    outer = autologged.get_run(run.id)
    assert outer.tags["estimator_class"].endswith("GridSearchCV")
    child = next(r for r in runs if r.id != run.id)
    assert child.parent_id == run.id
    assert autologged.get_run(child.id).params["C"] == 0.5


def test_user_params_win_over_autolog(autologged: Registry) -> None:
    X, y = load_iris(return_X_y=True)
    with modelvault.start_run() as run:
        run.log_param("C", "from the user")
        LogisticRegression(C=2.0, max_iter=500).fit(X, y)  # would conflict: logged apart
    assert autologged.get_run(run.id).params == {"C": "from the user"}
    (child,) = [r for r in autologged.runs() if r.id != run.id]
    assert autologged.get_run(child.id).params["C"] == 2.0


def test_disable_restores_fit() -> None:
    original = LogisticRegression.fit
    modelvault.autolog()
    assert LogisticRegression.fit is not original
    modelvault.autolog(disable=True)
    assert LogisticRegression.fit is original
