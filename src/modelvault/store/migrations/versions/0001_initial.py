"""The schema of the first release: registry, lifecycle, aliases, approvals, audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-03-01

Written out by hand, never generated from schema.py at run time: a migration is frozen once
released. Databases created before migrations existed are stamped at this revision (their
tables are exactly these). ``mv_versions.size`` is BIGINT: PostgreSQL's INTEGER would stop at
2 GiB, and SQLite stores both the same way, so stamped SQLite databases need no change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.String(27)
DIGEST = sa.String(71)


def _partial_index(name: str, table: str, columns: list[str], where: str) -> None:
    op.create_index(
        name,
        table,
        columns,
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.create_table(
        "mv_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "mv_projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "mv_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("mv_projects.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("latest_number", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_models_project_name"),
    )
    op.create_table(
        "mv_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("mv_models.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("label", sa.String(128)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("artifact_digest", DIGEST, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
        sa.UniqueConstraint("model_id", "label", name="uq_versions_model_label"),
    )
    op.create_index("ix_versions_digest", "mv_versions", ["digest"])
    op.create_index("ix_versions_artifact", "mv_versions", ["artifact_digest"])

    op.create_table(
        "mv_version_params",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value_text", sa.Text),
        sa.Column("value_num", sa.Float),
    )
    op.create_index("ix_params_key_num", "mv_version_params", ["key", "value_num"])
    op.create_index("ix_params_key_text", "mv_version_params", ["key", "value_text"])
    op.create_table(
        "mv_version_metrics",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_key_value", "mv_version_metrics", ["key", "value"])
    op.create_table(
        "mv_version_tags",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_tags_key_value", "mv_version_tags", ["key", "value"])
    op.create_table(
        "mv_version_parents",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("relation", sa.String(16), primary_key=True),
    )
    op.create_index("ix_parents_parent", "mv_version_parents", ["parent_id"])
    op.create_table(
        "mv_version_blobs",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("digest", DIGEST, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_version_blobs_digest", "mv_version_blobs", ["digest"])

    op.create_table(
        "mv_stage_intervals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("mv_models.id"), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_to", TS),
        sa.Column("set_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("ended_by", sa.String(256)),
        sa.Column("end_reason", sa.String(16)),
        sa.Column("audit_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_stage_version", "mv_stage_intervals", ["version_id", "valid_to"])
    op.create_index("ix_stage_model_stage", "mv_stage_intervals", ["model_id", "stage"])
    _partial_index(
        "uq_stage_one_production",
        "mv_stage_intervals",
        ["model_id"],
        "stage = 'production' AND valid_to IS NULL",
    )
    _partial_index(
        "uq_stage_one_open_per_version", "mv_stage_intervals", ["version_id"], "valid_to IS NULL"
    )

    op.create_table(
        "mv_alias_intervals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("mv_models.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_to", TS),
        sa.Column("set_by", sa.String(256), nullable=False),
        sa.Column("removed_by", sa.String(256)),
        sa.Column("audit_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_alias_model_name", "mv_alias_intervals", ["model_id", "name"])
    op.create_index("ix_alias_version", "mv_alias_intervals", ["version_id"])
    _partial_index("uq_alias_open", "mv_alias_intervals", ["model_id", "name"], "valid_to IS NULL")

    op.create_table(
        "mv_approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), nullable=False),
        sa.Column("approver", sa.String(256), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("version_id", "approver", name="uq_approvals_version_approver"),
    )

    op.create_table(
        "mv_audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("project", sa.String(64)),
        sa.Column("model", sa.String(64)),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_model", "mv_audit_events", ["project", "model", "seq"])
    op.create_index("ix_audit_actor", "mv_audit_events", ["actor", "seq"])
    op.create_index("ix_audit_action", "mv_audit_events", ["action", "seq"])
    op.create_index("ix_audit_ts", "mv_audit_events", ["ts"])
    head = op.create_table(
        "mv_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )

    # The rows the first release wrote on creation: the genesis head of the audit chain
    # (writers lock it, so it must exist before any write) and the pre-migration version mark.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    meta = sa.table("mv_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    for table in (
        "mv_audit_head",
        "mv_audit_events",
        "mv_approvals",
        "mv_alias_intervals",
        "mv_stage_intervals",
        "mv_version_blobs",
        "mv_version_parents",
        "mv_version_tags",
        "mv_version_metrics",
        "mv_version_params",
        "mv_versions",
        "mv_models",
        "mv_projects",
        "mv_meta",
    ):
        op.drop_table(table)
