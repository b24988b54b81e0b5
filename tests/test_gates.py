"""Gates that block: approvals, a required evaluation set, metric rules, comparisons with
production; the rule table; admin overrides; and the policy file's errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelvault import Forbidden, GateFailed, InvalidInput, Registry
from modelvault.gates import check_rule, parse_rule
from modelvault.policy import parse_policy

from .clitool import CLI
from .conftest import write_model

POLICY = """
[defaults]
approvals = 1
admins = ["carol"]

[defaults.gates.production]
eval_set = "claims-eval"
rules = [
  "auc >= 0.90",
  "p95_latency_ms <= 50",
  "auc >= production.auc - 0.005",
]
"""


def write_policy(reg: Registry, text: str = POLICY) -> None:
    reg.settings.policy.parent.mkdir(parents=True, exist_ok=True)
    reg.settings.policy.write_text(text)


@pytest.fixture
def staged(reg: Registry, as_user: Callable[[str], Registry], tmp_path: Path) -> Registry:
    """fraud:1 and fraud:2 in staging, each approved by bob; an evaluation set snapshot."""
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "set.csv").write_text("x,label\n1,1\n0,0\n")
    reg.snapshot(eval_dir, name="claims-eval", store=True)
    for n in (1, 2):
        reg.register("fraud", write_model(tmp_path, f"m{n}", f"model {n}".encode()))
        reg.promote(f"fraud:{n}", "staging")
        as_user("bob").approve(f"fraud:{n}")
    write_policy(reg)
    return reg


def report(reg: Registry, ref: str, auc: float, p95: float = 20.0) -> None:
    reg.record_evaluation(ref, "claims-eval", metrics={"auc": auc}, latency_ms={"p95": p95})


def test_failing_gate_blocks_and_a_new_report_lets_it_pass(staged: Registry) -> None:
    report(staged, "fraud:1", auc=0.85)
    with pytest.raises(GateFailed) as caught:
        staged.promote("fraud:1", "production", reason="launch")
    rules = {r["rule"]: r for r in caught.value.fields["rules"]}
    assert rules["auc >= 0.90"] == {
        "rule": "auc >= 0.90",
        "required": ">= 0.9",
        "actual": "0.85",
        "passed": False,
    }
    assert rules["p95_latency_ms <= 50"]["passed"]
    assert rules["approvals >= 1"]["passed"]
    assert rules["auc >= production.auc - 0.005"]["actual"] == "no production version"
    assert staged.get("fraud:1").stage == "staging"  # nothing moved
    promotions = staged.audit(action="stage.promote", model="fraud")
    assert [e.after["stage"] for e in promotions] == ["staging", "staging"]  # type: ignore[index]
    report(staged, "fraud:1", auc=0.93)  # fixed: a newer report on the same set
    assert staged.check_gate("fraud:1", "production").passed
    staged.promote("fraud:1", "production", reason="launch")
    assert staged.get("fraud@production").number == 1


def test_comparison_with_production(staged: Registry) -> None:
    report(staged, "fraud:1", auc=0.95)
    staged.promote("fraud:1", "production", reason="launch")
    report(staged, "fraud:2", auc=0.944)  # better than 0.90, worse than production - 0.005
    gate = staged.check_gate("fraud:2", "production")
    row = next(c for c in gate.checks if "production.auc" in c.rule)
    assert not row.passed
    assert row.required == ">= 0.945 (production auc 0.95 - 0.005)"
    report(staged, "fraud:2", auc=0.946)
    assert staged.check_gate("fraud:2", "production").passed


def test_production_without_a_report_on_the_set_fails_the_comparison(staged: Registry) -> None:
    write_policy(staged, "[defaults]\napprovals = 1\n")
    staged.promote("fraud:1", "production", reason="launch")  # no rule needs a report yet
    write_policy(staged)
    report(staged, "fraud:2", auc=0.99)
    gate = staged.check_gate("fraud:2", "production")
    row = next(c for c in gate.checks if "production.auc" in c.rule)
    assert (row.passed, row.actual) == (False, "production has no auc")


def test_missing_metric_and_missing_report_fail_without_crashing(staged: Registry) -> None:
    gate = staged.check_gate("fraud:1", "production")
    assert [c.passed for c in gate.checks] == [True, False, False, False, True]
    assert gate.checks[1].actual == "no report on this set"
    assert gate.checks[2].actual == "missing (auc not recorded)"
    write_policy(staged, POLICY.replace("claims-eval", "sha256:" + "ab" * 32))
    gate = staged.check_gate("fraud:1", "production")
    assert not gate.passed and "no snapshot sha256:abab" in gate.checks[-1].actual


def test_rules_without_an_evaluation_set_use_registered_metrics(
    reg: Registry, as_user: Callable[[str], Registry], tmp_path: Path
) -> None:
    write_policy(
        reg,
        '[projects.default.models.fraud.gates.staging]\nrules = ["auc >= 0.9"]\n'
        "[projects.default.models.other.gates.staging]\nrules = []\n",
    )
    reg.register("fraud", write_model(tmp_path, "a", b"a"), metrics={"auc": 0.8})
    reg.register("other", write_model(tmp_path, "b", b"b"), metrics={"auc": 0.8})
    with pytest.raises(GateFailed, match=r"auc >= 0.9 \(actual 0.8\)"):
        reg.promote("fraud:1", "staging")
    reg.promote("other:1", "staging")  # per-model sections: only fraud is gated


def test_admin_override_is_audited_and_approvals_are_never_overridden(
    staged: Registry, as_user: Callable[[str], Registry]
) -> None:
    report(staged, "fraud:1", auc=0.5)
    with pytest.raises(Forbidden, match="not an admin"):
        staged.promote("fraud:1", "production", reason="hotfix", override=True)
    carol = as_user("carol")
    with pytest.raises(InvalidInput, match="reason"):
        carol.promote("fraud:1", "production", override=True)
    done = carol.promote("fraud:1", "production", reason="regulator deadline", override=True)
    assert done.to_stage == "production"
    override = carol.audit(action="gate.override")
    assert len(override) == 1 and override[0].reason == "regulator deadline"
    assert override[0].actor == "carol"
    failed = override[0].before["failed"]  # type: ignore[index]
    assert [f["rule"] for f in failed] == ["auc >= 0.90"]
    # a version without its approval cannot be pushed through by an override
    staged.register("fraud", write_model(Path(staged.settings.home), "m3", b"3"))
    staged.promote("fraud:3", "staging")
    report(staged, "fraud:3", auc=0.99)
    with pytest.raises(GateFailed, match="approvals cannot be overridden"):
        carol.promote("fraud:3", "production", reason="x", override=True)


def test_policy_errors_name_the_line() -> None:
    bad_rule = POLICY.replace('"p95_latency_ms <= 50"', '"p95_latency_ms =< 50"')
    with pytest.raises(InvalidInput, match=r"line 10\): .*expected METRIC OP VALUE"):
        parse_policy(bad_rule)
    bad_value = POLICY.replace('"auc >= 0.90"', '"auc >= ninety"')
    with pytest.raises(InvalidInput, match=r"line 9\): .*expected a number or production"):
        parse_policy(bad_value)
    with pytest.raises(InvalidInput, match="line 3"):
        parse_policy("[defaults]\napprovals = 1\n[defaults.gates.production]]\nrules = []\n")
    with pytest.raises(InvalidInput, match="not 'archived'"):
        parse_policy("[defaults.gates.archived]\nrules = []\n")
    with pytest.raises(InvalidInput, match="unknown key 'rule'"):
        parse_policy('[defaults.gates.production]\nrule = "auc > 1"\n')


def test_cli_gate_and_promote_print_the_rule_table(cli: CLI, tmp_path: Path) -> None:
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "set.csv").write_text("x,label\n1,1\n")
    cli.json("data", "snapshot", str(eval_dir), "--name", "claims-eval", "--store")
    cli.json("register", "fraud", str(write_model(tmp_path, "m", b"m")))
    cli.json("promote", "fraud:1", "--to", "staging")
    cli.json("approve", "fraud:1", actor="bob")
    home = Path(os.environ["MODELVAULT_HOME"])
    (home / "policy.toml").write_text(POLICY)
    metrics = tmp_path / "m.yaml"
    metrics.write_text("metrics:\n  auc: 0.85\nlatency_ms:\n  p95: 30\n")
    cli.json("eval", "record", "fraud:1", "--eval-set", "claims-eval", "--metrics", str(metrics))
    code, out, _ = cli.run("gate", "fraud:1", "--to", "production")
    assert code == 7 and "FAILS" in out and "auc >= 0.90" in out
    code, _, err = cli.run("promote", "fraud:1", "--to", "production", "--reason", "go")
    assert code == 7
    assert err.splitlines()[0].startswith("error: fraud:1 cannot enter production")
    assert any(
        line.startswith("auc >= 0.90") and line.endswith("FAIL") for line in err.splitlines()
    )
    metrics.write_text("metrics:\n  auc: 0.95\nlatency_ms:\n  p95: 30\n")
    cli.json("eval", "record", "fraud:1", "--eval-set", "claims-eval", "--metrics", str(metrics))
    gate = cli.json("gate", "fraud:1")
    assert gate["passed"] is True
    assert (
        cli.json("promote", "fraud:1", "--to", "production", "--reason", "go")["to_stage"]
        == "production"
    )


@given(
    st.sampled_from([">=", "<=", ">", "<", "==", "!="]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e6, 1e6, allow_nan=False),
)
def test_rule_arithmetic(op: str, value: float, threshold: float) -> None:
    rule = parse_rule(f"m {op} {threshold!r}")
    _, _, passed = check_rule(rule, {"m": value}, None)
    assert passed == eval(f"{value!r} {op} {threshold!r}")


@pytest.mark.parametrize(
    ("text", "key", "production_key", "arith", "operand"),
    [
        ("auc >= production.auc - 0.005", "auc", "auc", "-", 0.005),
        ("f1-macro>=production.f1-macro", "f1-macro", "f1-macro", None, 0.0),
        ("loss <= production.loss * 1.1", "loss", "loss", "*", 1.1),
        ("latency/p95 < production.latency/p95+5", "latency/p95", "latency/p95", "+", 5.0),
    ],
)
def test_parse_production_rules(
    text: str, key: str, production_key: str, arith: str | None, operand: float
) -> None:
    rule = parse_rule(text)
    assert (rule.key, rule.production_key, rule.arith, rule.operand) == (
        key,
        production_key,
        arith,
        operand,
    )


@pytest.mark.parametrize(
    "text", ["auc", "auc >= ", ">= 0.9", "auc >= high", "auc >= production.", "auc >= nan"]
)
def test_malformed_rules(text: str) -> None:
    with pytest.raises(InvalidInput, match="gate rule"):
        parse_rule(text)
