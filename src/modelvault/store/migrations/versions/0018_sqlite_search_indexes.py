"""Drop the (key, value) search indexes on SQLite, whose query plans never use them.

A search reads a version's params, metrics and tags by primary key; SQLite's planner always
probes that key (correlated EXISTS), so the four indexes only cost writes: 45 of the ≈ 105
pages a registration wrote. PostgreSQL keeps them (its semi-join plans start from them).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_params_key_num", "mv_version_params", ["key", "value_num"]),
    ("ix_params_key_text", "mv_version_params", ["key", "value_text"]),
    ("ix_metrics_key_value", "mv_version_metrics", ["key", "value"]),
    ("ix_tags_key_value", "mv_version_tags", ["key", "value"]),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
