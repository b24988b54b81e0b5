"""The deployment commands as a user runs them: deploy, status, rollout, rollback --env,
env; bad input exits non-zero with one line."""

from __future__ import annotations

from pathlib import Path

from modelvault.cli import output

from .clitool import CLI
from .deploy_helpers import sklearn_dir


def _setup(cli: CLI, tmp_path: Path) -> None:
    for i, c in enumerate((1.0, 0.3), start=1):
        code, _, err = cli.run("register", "fraud", str(sklearn_dir(tmp_path, f"m{i}", c)))
        assert code == 0, err
        assert cli.run("promote", f"fraud:{i}", "--to", "staging")[0] == 0
        assert cli.run("approve", f"fraud:{i}", actor="bob")[0] == 0


def test_deploy_status_rollout_and_rollback(cli: CLI, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    first = cli.json("deploy", "fraud:1", "--env", "production", "--reason", "launch")
    assert first["revision"] == 1
    dep = cli.json(
        "deploy", "fraud:2", "--env", "production", "--canary", "10,50,100", "--bake", "5m",
        "--sticky", "header:x-user-id",
    )  # fmt: skip
    assert [(a["release"]["version"], a["weight"]) for a in dep["spec"]["arms"]] == [
        (2, 10.0),
        (1, 90.0),
    ]
    cli.monkeypatch.setattr(output.stdout, "width", 250)
    code, out, _ = cli.run("status", "--env", "production")
    assert code == 0 and "fraud:2 10%, fraud:1 90%" in out and "step 1/3" in out
    found = cli.json("rollout", "status", "fraud", "--env", "production")
    assert found["bake_remaining_s"] > 0
    assert found["guardrails"][0]["verdict"] == "inconclusive"
    code, _, err = cli.run("rollout", "pause", "fraud", "--env", "production")
    assert code == 0 and "paused" in err
    code, _, err = cli.run("rollback", "fraud", "--env", "production", "--reason", "pager")
    assert code == 0 and "fraud:1 100%" in err
    past = cli.json("status", "--env", "production", "--at", first["valid_from"])
    assert past[0]["revision"] == 1


def test_deploy_from_a_spec_file(cli: CLI, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: fraud\nenvironment: staging\narms:\n"
        "  - {release: 'fraud:2', weight: 30}\n  - {release: 'fraud:1', weight: 70}\n"
    )
    done = cli.json("deploy", "-f", str(spec))
    assert done["environment"] == "staging" and len(done["spec"]["arms"]) == 2


def test_bad_input_is_one_line_and_a_non_zero_exit(cli: CLI, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "model: fraud\nenvironment: staging\narms:\n"
        "  - {release: 'fraud:2', weight: 30}\n  - {release: 'fraud:1', weight: 60}\n"
    )
    code, _, err = cli.run("deploy", "-f", str(spec))
    assert code == 2
    assert err.strip() == "error: arm weights must sum to 100, not 30 + 60 = 90"
    code, _, err = cli.run("deploy", "fraud:7", "--env", "staging")
    assert code == 3 and "unknown release fraud:7" in err and "Traceback" not in err
    code, _, err = cli.run("rollback", "fraud", "--feature", "x", "--reason", "r")
    assert code == 2 and "--feature needs --env" in err


def test_environments(cli: CLI) -> None:
    assert cli.run("env", "add", "eu")[0] == 0
    names = [e["name"] for e in cli.json("env", "list")]
    assert names == ["development", "staging", "production", "eu"]
    code, _, err = cli.run("status", "--env", "nowhere")
    assert code == 3 and "environment 'nowhere' does not exist" in err


def test_rollback_without_env_stays_registry_level(cli: CLI, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    assert cli.run("promote", "fraud:1", "--to", "production", "--reason", "a")[0] == 0
    assert cli.run("promote", "fraud:2", "--to", "production", "--reason", "b")[0] == 0
    done = cli.json("rollback", "fraud", "--reason", "c")
    assert done["version"] == 1 and "to_stage" in done


def test_controller_once(cli: CLI, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    assert cli.run("deploy", "fraud:1", "--env", "production", "--reason", "a")[0] == 0
    assert cli.run("deploy", "fraud:2", "--env", "production", "--canary", "5,100")[0] == 0
    code, _, err = cli.run("controller", "--env", "production", "--once")
    assert code == 0 and "fraud: hold baking" in err
    code, _, err = cli.run("controller", "--env", "nowhere", "--once")
    assert code == 3 and "environment 'nowhere'" in err
