"""Docs that cannot drift: generated references, settings, limits, error codes, shapes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from modelvault import domain, errors
from modelvault.cli.docgen import generate
from modelvault.cli.errors import EXIT_CODES
from modelvault.deploy import records as deploy_records
from modelvault.events import records as event_records
from modelvault.limits import ALIAS_PATTERN, KEY_PATTERN, LIMITS, NAME_PATTERN
from modelvault.service.rollouts import TickResult
from modelvault.settings import SETTINGS
from modelvault.tracking import records

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_is_generated() -> None:
    assert (DOCS / "cli-reference.md").read_text() == generate(), "run `make docs`"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for setting in SETTINGS:
        row = f"| {setting.name} | `{setting.env}` |"
        assert row in text, f"docs/configuration.md lacks {setting.env}"
        assert setting.help in text


def test_every_limit_and_pattern_is_documented() -> None:
    text = (DOCS / "limits.md").read_text()
    for name, value in LIMITS.items():
        assert f"| {name} | {value} |" in text, name
    for pattern in (NAME_PATTERN, ALIAS_PATTERN, KEY_PATTERN):
        assert pattern in text


def test_every_error_code_and_exit_code_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    for cls in errors.ERROR_CLASSES:
        assert f"`{cls.code}`" in text, cls.code
        assert re.search(rf"\| {cls.exit_code} \|[^\n]*`{cls.__name__}`", text), cls.__name__
    for name, code, _ in EXIT_CODES:
        assert f"| {code} | `{name}`" in text


def test_every_json_field_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    for cls in (
        domain.Version,
        domain.CodeRef,
        domain.EnvironmentInfo,
        domain.DatasetRef,
        domain.Model,
        domain.Approval,
        domain.Transition,
        domain.StageInterval,
        domain.AliasInterval,
        domain.AuditEvent,
        domain.AuditVerification,
        domain.SchemaStatus,
        domain.PullResult,
        domain.VersionDiff,
        domain.Change,
        records.Run,
        records.RunInput,
        records.RunArtifact,
        records.MetricPoint,
        records.RunComparison,
        records.Snapshot,
        records.SnapshotDiff,
        records.FileChange,
        records.EvaluationReport,
        records.GateReport,
        records.GateCheck,
        records.BehaviourComparison,
        records.ExampleChange,
        records.Lineage,
        records.LineageNode,
        event_records.Webhook,
        event_records.CreatedWebhook,
        event_records.DeadLetter,
        deploy_records.Deployment,
        deploy_records.DeploymentSpec,
        deploy_records.Release,
        deploy_records.Arm,
        deploy_records.Segment,
        deploy_records.FeatureRoute,
        deploy_records.Shadow,
        deploy_records.Standby,
        deploy_records.RolloutPlan,
        deploy_records.Guardrail,
        deploy_records.RolloutStatus,
        deploy_records.ArmStats,
        deploy_records.GuardrailResult,
        deploy_records.Environment,
        TickResult,
    ):
        for field in dataclasses.fields(cls):
            assert f'"{field.name}"' in text, f"{cls.__name__}.{field.name} is undocumented"


def test_every_declared_setting_is_read_from_its_variable(tmp_path: Path) -> None:
    from modelvault.settings import Settings

    values = {
        "home": str(tmp_path / "h"),
        "db": f"sqlite:///{tmp_path}/x.db",
        "blobs": "memory://",
        "actor": "someone",
        "project": "proj",
        "policy": str(tmp_path / "p.toml"),
        "sqlite_synchronous": "NORMAL",
        "sqlite_busy_ms": "250",
        "pg_lock_timeout_ms": "1500",
        "inline_blob_max": "16KiB",
        "s3_endpoint_url": "http://127.0.0.1:9000",
        "s3_region": "eu-west-3",
        "s3_multipart_threshold": "8MiB",
        "s3_part_size": "32MiB",
        "s3_timeout": "7.5",
        "s3_max_attempts": "4",
        "audit_key": str(tmp_path / "k.pem"),
        "audit_witness": str(tmp_path / "w"),
        "retention": str(tmp_path / "r.toml"),
        "cold_blobs": str(tmp_path / "cold"),
        "checkpoint_every": "50",
        "checkpoint_seconds": "60",
        "oidc_issuer": "https://login.example.com/",
        "url": "http://registry.example.com:7310",
        "token": "mvt_abcdefghijkl_secret",
        "oidc_audience": "modelvault",
        "oidc_jwks_url": "https://login.example.com/jwks.json",
    }
    assert set(values) == {s.name for s in SETTINGS}
    env = {s.env: values[s.name] for s in SETTINGS}
    settings = Settings.from_env(env=env)
    for s in SETTINGS:
        assert str(getattr(settings, s.name)) == values[s.name], s.name


def test_tracking_example_runs(tmp_path: Path) -> None:
    """docs/tracking.md's worked example is examples/tracking.py; it must keep working."""
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    assert "examples/tracking.py" in (DOCS / "tracking.md").read_text()
    code = (
        "import sys, runpy, pathlib; sys.argv=['tracking.py'];"
        f"m = runpy.run_path({str(root / 'examples' / 'tracking.py')!r});"
        f"m['main'](pathlib.Path({str(tmp_path / 'home')!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "registered fraud-detector:1 from run" in out.stdout
    assert "default/fraud-detector:1 <- run" in out.stdout
