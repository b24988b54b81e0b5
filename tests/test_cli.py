"""The CLI end to end, in process: JSON shapes, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from modelvault.cli import main
from modelvault.cli.errors import EXIT_CODES

from .backends import engine_for
from .clitool import CLI
from .conftest import write_model


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("modelvault ")


def test_story_through_the_cli(cli: CLI, tmp_path: Path) -> None:
    assert cli.json("init")["home"].endswith("mvhome")
    v1 = cli.json(
        "register",
        "fraud",
        str(write_model(tmp_path, "a", b"a")),
        "--param",
        "lr=0.1",
        "--metric",
        "auc=0.9",
        "--tag",
        "team=risk",
        "--label",
        "1.0.0",
    )
    assert (v1["model"], v1["number"], v1["stage"]) == ("fraud", 1, "development")
    assert v1["digest"].startswith("sha256:") and v1["params"] == {"lr": "0.1"}
    v2 = cli.json(
        "register",
        "fraud",
        str(write_model(tmp_path, "b", b"b")),
        "--param",
        "lr=0.2",
        "--metric",
        "auc=0.93",
    )
    assert v2["number"] == 2
    assert cli.json("promote", "fraud:1", "--to", "staging")["to_stage"] == "staging"
    approval = cli.json("approve", "fraud:1", "--comment", "ok", actor="bob")
    assert approval["approver"] == "bob"
    done = cli.json("promote", "fraud:1", "--to", "production", "--reason", "launch")
    assert done["to_stage"] == "production"
    cli.json("promote", "fraud:2", "--to", "staging")
    cli.json("approve", "fraud:2", actor="bob")
    assert (
        cli.json("promote", "fraud:2", "--to", "production", "--reason", "better")["replaced"] == 1
    )
    shown = cli.json("show", "fraud@production")
    assert shown["number"] == 2
    diff = cli.json("diff", "fraud:1", "fraud:2")
    assert diff["metrics"] == [{"key": "auc", "a": 0.9, "b": 0.93, "delta": pytest.approx(0.03)}]
    assert [c["key"] for c in diff["files"]] == ["model.bin"]
    found = cli.json("search", "metrics.auc > 0.92")
    assert [v["number"] for v in found] == [2]
    back = cli.json("rollback", "fraud", "--reason", "regressed")
    assert (back["version"], back["replaced"]) == (1, 2)
    pulled = cli.json("pull", "fraud@production", str(tmp_path / "out"))
    assert pulled["files"] == ["model.bin"]
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"a"
    alias = cli.json("alias", "set", "fraud", "champion", "2", "--expect", "none")
    assert alias["version"] == 2
    assert [h["version"] for h in cli.json("alias", "history", "fraud")] == [2]
    events = cli.json("audit", "list", "--model", "fraud")
    assert events[-1]["action"] == "alias.set"
    verified = cli.json("audit", "verify")
    assert verified["ok"] is True
    code, out, _err = cli.run("versions", "fraud")
    assert code == 0 and "fraud:2" in out
    code, out, _err = cli.run("audit")
    assert code == 0 and "stage.rollback" in out


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("register", "Bad Name", "."), 2, "invalid model name"),
        (("register", "m", "/nonexistent/path"), 2, "does not exist"),
        (("register", "m", ".", "--param", "novalue"), 2, "use KEY=VALUE"),
        (("register", "m", ".", "--metric", "auc=high"), 2, "must be a number"),
        (("show", "nope:1"), 3, "does not exist"),
        (("show", "m::1"), 2, "cannot read reference"),
        (("promote", "m:1", "--to", "prod"), 2, "unknown stage"),
        (("search", "metrics.auc >"), 2, "expected a value after metrics.auc"),
        (
            ("search", "tags.team = fraud"),
            2,
            'values must be quoted: write "fraud"\ntags.team = fraud\n            ^',
        ),
        (("rollback", "m", "--reason", "x"), 3, "does not exist"),
        (("show", "m:1", "--at", "yesterday-ish"), 2, "cannot read"),
    ],
)
def test_errors_are_one_line_with_documented_exit_codes(
    cli: CLI, args: tuple[str, ...], exit_code: int, message: str
) -> None:
    code, out, err = cli.run(*args)
    assert code == exit_code, err
    assert message in err
    assert "Traceback" not in err + out
    assert err.startswith("error: ")


def test_json_errors_carry_the_code(cli: CLI) -> None:
    code, out, _err = cli.run("show", "ghost:1", "--json")
    assert code == 3
    assert json.loads(out)["error"]["code"] == "not_found"


def test_own_approval_and_gate_exit_codes(cli: CLI, tmp_path: Path) -> None:
    cli.json("register", "m", str(write_model(tmp_path, "a", b"a")))
    cli.json("promote", "m:1", "--to", "staging")
    code, _, err = cli.run("approve", "m:1")
    assert code == 6 and "cannot approve" in err
    code, _, err = cli.run("promote", "m:1", "--to", "production", "--reason", "x")
    assert code == 7 and "approvals >= 1 (actual 0)" in err
    cli.json("alias", "set", "m", "champion", "1")
    code, _, err = cli.run("alias", "set", "m", "champion", "1", "--expect", "none")
    assert code == 5 and "someone moved it" in err


def test_corrupt_blob_makes_pull_fail_naming_the_file(
    cli: CLI, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVAULT_INLINE_BLOB_MAX", "0")  # a blob file, not a row
    v = cli.json("register", "m", str(write_model(tmp_path, "a", b"precious weights")))
    blob_dirs = home / "blobs" / "sha256"
    target = None
    for blob in blob_dirs.rglob("*"):
        if blob.is_file() and blob.read_bytes() == b"precious weights":
            target = blob
    assert target is not None
    target.chmod(0o644)
    target.write_bytes(b"tampered weights")
    code, _out, err = cli.run("pull", "m:1", str(tmp_path / "out"))
    assert code == 8
    assert "model.bin" in err and "does not match" in err
    assert not (tmp_path / "out" / "model.bin").exists()
    assert v["number"] == 1


def test_corrupt_inline_blob_makes_pull_fail_naming_the_file(
    cli: CLI, tmp_path: Path, db_url: str
) -> None:
    cli.json("register", "m", str(write_model(tmp_path, "a", b"precious weights")))
    engine = engine_for(db_url)
    with engine.begin() as db:  # the small file is kept in the metadata store
        changed = db.execute(
            text("UPDATE mv_inline_blobs SET data = :bad WHERE data = :good"),
            {"bad": b"tampered weights", "good": b"precious weights"},
        ).rowcount
    engine.dispose()
    assert changed == 1
    code, _out, err = cli.run("pull", "m:1", str(tmp_path / "out"))
    assert code == 8
    assert "model.bin" in err and "does not match" in err
    assert not (tmp_path / "out" / "model.bin").exists()


def test_audit_verify_exit_code_names_the_sequence(cli: CLI, tmp_path: Path, db_url: str) -> None:
    cli.json("register", "m", str(write_model(tmp_path, "a", b"a")))
    engine = engine_for(db_url)
    with engine.begin() as db:
        db.execute(text("UPDATE mv_audit_events SET actor = 'eve' WHERE seq = 2"))
    engine.dispose()
    code, _, err = cli.run("audit", "verify")
    assert code == 8
    assert "event 2" in err


def test_exit_code_table_matches_error_classes() -> None:
    from modelvault import errors

    for name, code, _ in EXIT_CODES:
        assert getattr(errors, name).exit_code == code


def test_progress_bars_only_for_large_transfers() -> None:
    from modelvault.cli.output import PROGRESS_THRESHOLD, progress_bars

    with progress_bars(True, "storing") as factory:
        assert factory(PROGRESS_THRESHOLD - 1) is None
        tick = factory(PROGRESS_THRESHOLD + 1)
        assert tick is not None
        tick(1024)
    with progress_bars(False, "storing") as factory:
        assert factory(PROGRESS_THRESHOLD * 10) is None


def test_large_registration_reports_progress_through_the_sdk(reg: object, tmp_path: Path) -> None:
    from modelvault import Registry

    assert isinstance(reg, Registry)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * (3 << 20))
    seen: list[int] = []
    totals: list[int] = []

    def factory(total: int) -> object:
        totals.append(total)
        return seen.append

    reg.register("big", big, progress=factory, capture_environment=False)  # type: ignore[arg-type]
    assert totals == [3 << 20]
    assert sum(seen) == 3 << 20
    pulled: list[int] = []
    reg.pull("big:1", tmp_path / "out", progress=lambda total: pulled.append)
    assert sum(pulled) == 3 << 20


def test_db_current_and_upgrade(cli: CLI) -> None:
    before = cli.json("db", "current")
    assert (before["revision"], before["state"]) == (None, "empty")
    done = cli.json("db", "upgrade")
    assert done["state"] == "current" and done["revision"] == done["head"]
    assert done["applied"][0] == "0001" and done["applied"][-1] == done["head"]
    assert cli.json("db", "upgrade")["applied"] == []
    code, out, err = cli.run("db", "current")
    assert code == 0 and out.strip() == done["head"] and "current" in err
