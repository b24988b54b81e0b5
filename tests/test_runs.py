"""Runs: capture at start, write-once params, buffered metric series (NaN kept), statuses,
nesting, artifacts, inputs, comparison, and registering a version from a run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelvault
from modelvault import Conflict, InvalidInput, NotFound, Registry
from modelvault.tracking.api import set_default_registry

from .clitool import CLI


@pytest.fixture
def tracked(reg: Registry) -> Iterator[Registry]:
    set_default_registry(reg)
    yield reg
    active = modelvault.active_run()
    while active is not None:
        active.end("killed", failure="left open by a test")
        active = modelvault.active_run()
    set_default_registry(None)


def test_run_captures_command_environment_and_code(tracked: Registry, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (repo / "train.py").write_text("print(2)\n")  # uncommitted change: dirty, diff kept
    with modelvault.start_run(experiment="fraud", name="first", code_dir=repo) as run:
        pass
    info = tracked.get_run(run.id)
    assert info.status == "finished"
    assert info.experiment == "fraud" and info.name == "first"
    assert info.code is not None and info.code.commit == commit and info.code.dirty
    assert info.code.diff_digest is not None
    assert b"print(2)" in tracked._ctx.blobs.read_bytes(info.code.diff_digest)
    assert info.environment is not None and info.environment.package_count > 10
    assert info.environment.memory_bytes and info.environment.cpu_count
    assert info.command and info.host["pid"] == os.getpid()


def test_params_are_write_once(tracked: Registry) -> None:
    with modelvault.start_run() as run:
        run.log_params({"lr": 0.1, "layers": 3})
        run.log_param("lr", 0.1)  # the same value again: nothing happens
        with pytest.raises(Conflict, match=r"param 'lr' .* already 0\.1"):
            run.log_param("lr", 0.2)
        with pytest.raises(Conflict):
            run.log_param("layers", "3")  # another type is another value
    assert dict(tracked.get_run(run.id).params) == {"lr": 0.1, "layers": 3}
    events = list(tracked.audit(action="run.params"))
    assert len(events) == 1  # the no-op and the refused writes left no trace


def test_metric_series_are_buffered_and_complete(tracked: Registry) -> None:
    with modelvault.start_run() as run:
        for step in range(2500):
            run.log_metric("loss", 1 / (step + 1))
        run.log_metrics({"acc": 0.5, "f1": 0.25}, step=7)
        run.log_batch([("acc", 0.75, 9), ("f1", 0.5, 9)])
    history = tracked.metric_history(run.id, "loss")
    assert [p.step for p in history] == list(range(2500))
    assert history[-1].value == pytest.approx(1 / 2500)
    info = tracked.get_run(run.id)
    assert info.metrics == {"loss": pytest.approx(1 / 2500), "acc": 0.75, "f1": 0.5}
    # every stored point is covered by a batch event in the audit chain
    batches = tracked.audit(action="run.metrics")
    assert sum(e.after["points"] for e in batches if e.after) == 2504
    assert tracked.verify_audit().ok


def test_nan_and_infinity_are_stored_faithfully(tracked: Registry) -> None:
    with modelvault.start_run() as run:
        run.log_metric("loss", float("nan"), step=0)
        run.log_metric("loss", float("inf"), step=1)
        run.log_metric("loss", float("-inf"), step=2)
    values = [p.value for p in tracked.metric_history(run.id, "loss")]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


@pytest.mark.parametrize(
    ("key", "value", "step", "message"),
    [
        ("bad key!", 1.0, None, "invalid metric key"),
        ("/lead", 1.0, None, "invalid metric key"),
        ("loss", "high", None, "must be a number"),
        ("loss", True, None, "must be a number"),
        ("loss", 1.0, -1, "step must be"),
    ],
)
def test_bad_metric_points_are_refused_at_once(
    tracked: Registry, key: str, value: object, step: int | None, message: str
) -> None:
    with modelvault.start_run() as run, pytest.raises(InvalidInput, match=message):
        run.log_metric(key, value, step=step)  # type: ignore[arg-type]
    assert tracked.get_run(run.id).metrics == {}


def test_exception_marks_the_run_failed_and_flushes(tracked: Registry) -> None:
    def train() -> str:
        with modelvault.start_run() as run:
            run.log_metric("loss", 0.5)
            _ = 1 / 0
        return run.id

    with pytest.raises(ZeroDivisionError):
        train()
    (run,) = tracked.runs()
    info = tracked.get_run(run.id)
    assert info.status == "failed"
    assert info.failure is not None and info.failure.startswith("ZeroDivisionError")
    assert info.metrics == {"loss": 0.5}


def test_keyboard_interrupt_marks_the_run_killed(tracked: Registry) -> None:
    with pytest.raises(KeyboardInterrupt), modelvault.start_run() as run:
        raise KeyboardInterrupt
    assert tracked.get_run(run.id).status == "killed"


def test_an_ended_run_cannot_change(tracked: Registry) -> None:
    with modelvault.start_run() as run:
        pass
    with pytest.raises(Conflict, match="has ended"):
        run.log_metric("x", 1.0)
    with pytest.raises(Conflict, match="has ended"):
        tracked.log_params(run.id, {"a": 1})
    with pytest.raises(Conflict, match="has ended"):
        tracked.end_run(run.id, "failed")


def test_nested_runs(tracked: Registry) -> None:
    with modelvault.start_run(experiment="search") as parent:
        with pytest.raises(Conflict, match="nested=True"):
            modelvault.start_run(experiment="search")
        with modelvault.start_run(experiment="search", nested=True) as child:
            assert modelvault.active_run() is child
        with parent.start_run(experiment="search") as second:
            pass
        assert modelvault.active_run() is parent
    assert tracked.get_run(child.id).parent_id == parent.id
    assert tracked.get_run(second.id).parent_id == parent.id
    assert modelvault.active_run() is None


def test_runs_listing_and_prefixes(tracked: Registry) -> None:
    ids = []
    for lr in (0.1, 0.2):
        with modelvault.start_run(experiment="a") as run:
            run.log_params({"lr": lr, "layers": 2})
            run.log_metric("auc", lr * 4)
        ids.append(run.id)
    with modelvault.start_run(experiment="b"):
        pass
    assert {r.id for r in tracked.runs(experiment="a")} == set(ids)
    assert len(tracked.runs()) == 3
    assert tracked.get_run(ids[0][:8]).id == ids[0]
    with pytest.raises(InvalidInput, match="6-32 hexadecimal"):
        tracked.get_run("abc")
    with pytest.raises(NotFound):
        tracked.get_run("0" * 32)
    comparison = tracked.compare_runs(ids)
    assert comparison.params["lr"] == (0.1, 0.2)
    assert comparison.params["layers"] == (2, 2)
    assert set(comparison.differs) == {"lr", "auc"}


def test_artifacts_and_inputs(tracked: Registry, tmp_path: Path) -> None:
    data = tmp_path / "claims"
    data.mkdir()
    (data / "a.csv").write_text("x,label\n1,0\n")
    out = tmp_path / "report.txt"
    out.write_text("hello")
    with modelvault.start_run() as run:
        snap = run.use_dataset(data, role="train")
        run.use_dataset(snap, role="train")  # recorded once
        run.log_artifact(out)
        with pytest.raises(Conflict, match="write-once"):
            run.log_artifact(out)
        with pytest.raises(InvalidInput, match="dataset role"):
            run.use_dataset(snap, role="training")
    info = tracked.get_run(run.id)
    assert [(i.role, i.snapshot.digest) for i in info.inputs] == [("train", snap.digest)]
    assert [a.path for a in info.artifacts] == ["report.txt"]
    assert tracked._ctx.blobs.read_bytes(info.artifacts[0].digest) == b"hello"


def test_register_from_run_carries_the_record(tracked: Registry, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    modelvault.seed_everything(7)
    with modelvault.start_run(experiment="fraud") as run:
        run.log_params({"C": 1.0})
        run.log_metric("auc", 0.8)
        run.log_metric("auc", 0.9)
        run.use_dataset(model, role="train", name="train-data")
        version = run.register_model("fraud", model, tags={"team": "risk"})
    assert version.run_id == run.id
    assert version.params == {"C": 1.0}
    assert version.metrics == {"auc": 0.9}
    assert [(d.name, d.role) for d in version.datasets] == [("train-data", "train")]
    assert version.environment is not None and version.environment.seed == 7
    assert version.tags == {"team": "risk"}
    stored = tracked.get("fraud:1")
    assert stored.run_id == run.id and stored.metrics == {"auc": 0.9}
    assert tracked.get_run(run.id).versions == ("fraud:1",)


def test_register_from_run_refuses_non_finite_final_metrics(
    tracked: Registry, model_dir: Path
) -> None:
    with modelvault.start_run() as run:
        run.log_metric("loss", float("nan"))
        with pytest.raises(InvalidInput, match=r"'loss' .* nan"):
            run.register_model("fraud", model_dir)
        version = run.register_model("fraud", model_dir, metrics={"loss": 0.3})
    assert version.metrics == {"loss": 0.3}
    assert [v.number for v in tracked.versions("fraud")] == [1]


def test_register_from_run_without_a_logged_model(tracked: Registry) -> None:
    with modelvault.start_run() as run, pytest.raises(InvalidInput, match="logged no model"):
        run.register_model("fraud")


def _child(home: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import modelvault
        from modelvault import Registry, Settings
        from modelvault.tracking.api import set_default_registry

        set_default_registry(Registry(settings=Settings.from_env(env={}, home=HOME, actor="a")))
        run = modelvault.start_run(experiment="x")
        print(run.id, flush=True)
        for i in range(50):
            run.log_metric("m", float(i))
        """
    ).replace("HOME", repr(str(home)))
    return subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("", "finished"),  # left open: ended at interpreter exit, points flushed
        ("raise RuntimeError('boom')", "failed"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", "killed"),
    ],
)
def test_open_runs_end_with_the_process(tmp_path: Path, body: str, status: str) -> None:
    home = tmp_path / "h"
    proc = _child(home, body)
    run_id = proc.stdout.split()[0]
    reg = Registry(settings=modelvault.Settings.from_env(env={}, home=home, actor="a"))
    try:
        info = reg.get_run(run_id)
        assert info.status == status, proc.stderr
        assert len(reg.metric_history(run_id, "m")) == 50
        if status == "failed":
            assert info.failure is not None and "RuntimeError: boom" in info.failure
    finally:
        reg.close()


def test_system_metrics_are_sampled(tracked: Registry) -> None:
    import time

    with modelvault.start_run(system_metrics=0.1) as run:
        time.sleep(0.5)
    metrics = tracked.get_run(run.id).metrics
    assert {"system/cpu_percent", "system/memory_used_mb", "system/process_rss_mb"} <= set(metrics)
    assert metrics["system/process_rss_mb"] > 1
    with pytest.raises(InvalidInput, match="system_metrics"):
        modelvault.start_run(system_metrics=0.01)


def test_cli_runs(cli: CLI, tracked: Registry, model_dir: Path) -> None:
    ids = []
    for lr in (0.1, 0.2):
        with modelvault.start_run(experiment="fraud") as run:
            run.log_params({"lr": lr})
            run.log_metric("auc", lr + 0.7)
        ids.append(run.id)
    listed = cli.json("runs", "--experiment", "fraud")
    assert [r["id"] for r in listed] == ids[::-1]
    shown = cli.json("run", "show", ids[0][:10])
    assert shown["params"] == {"lr": 0.1} and shown["status"] == "finished"
    compared = cli.json("runs", "compare", ids[0], ids[1])
    assert compared["params"]["lr"] == [0.1, 0.2] and "auc" in compared["differs"]
    history = cli.json("run", "metric", ids[1], "auc")
    assert [p["value"] for p in history] == [pytest.approx(0.9)]
    version = cli.json("register", "fraud", str(model_dir), "--run", ids[1])
    assert version["run_id"] == ids[1] and version["params"] == {"lr": 0.2}
    code, _, err = cli.run("run", "show", "zz")
    assert code == 2 and "6-32 hexadecimal" in err
    code, _, err = cli.run("register", "fraud", "--run", ids[0])
    assert code == 2 and "logged no model" in err
