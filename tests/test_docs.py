"""Docs that cannot drift: generated references, settings, limits, error codes, shapes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from modelvault import domain, errors
from modelvault.cli.docgen import generate
from modelvault.cli.errors import EXIT_CODES
from modelvault.limits import ALIAS_PATTERN, KEY_PATTERN, LIMITS, NAME_PATTERN
from modelvault.settings import SETTINGS

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
        domain.PullResult,
        domain.VersionDiff,
        domain.Change,
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
    }
    assert set(values) == {s.name for s in SETTINGS}
    env = {s.env: values[s.name] for s in SETTINGS}
    settings = Settings.from_env(env=env)
    for s in SETTINGS:
        assert str(getattr(settings, s.name)) == values[s.name], s.name
