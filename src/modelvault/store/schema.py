"""The metadata schema, written once for SQLite and PostgreSQL alike.

Times are fixed-width UTC text (see timeutil), JSON documents are canonical JSON text, so
both dialects store and compare them the same way. Mutable state (stages, aliases) lives in
interval tables: a row is never updated except to close its interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

SCHEMA_VERSION = 1

metadata = MetaData()

# Partial indexes (unique among the rows WHERE ...), kept aside until a database of a given
# kind is opened: naming ``sqlite_where``/``postgresql_where`` at declaration would load both
# dialects' modules on every start, ≈ 30 ms of a SQLite server's first second.
_PARTIAL: list[tuple[Index, str]] = []
_APPLIED: set[str] = set()


def partial(index: Index, where: str) -> None:
    """Declare *index* partial: it covers only the rows matching the SQL condition *where*."""
    _PARTIAL.append((index, where))


def use_dialect(name: str) -> None:
    """Give the partial indexes their condition in dialect *name* (before any DDL for it)."""
    if name in _APPLIED or name not in ("sqlite", "postgresql"):
        return
    for index, where in _PARTIAL:
        index.dialect_kwargs[f"{name}_where"] = text(where)
    _APPLIED.add(name)


_POSTGRESQL_ONLY: set[str] = set()


def postgresql_only(index: Index) -> None:
    """Build *index* on PostgreSQL only (``create_all`` skips it on SQLite)."""
    index.ddl_if(dialect="postgresql")
    _POSTGRESQL_ONLY.add(str(index.name))


def compared_on(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's ``include_object`` for comparing a database of kind *dialect* with this
    schema: an index built on the other kind only is not missing from it."""

    def include(obj: Any, name: str | None, kind: str, reflected: bool, _: Any) -> bool:
        built = dialect == "postgresql" or name not in _POSTGRESQL_ONLY
        return reflected or kind != "index" or built

    return include


TS = String(27)
DIGEST = String(71)

meta = Table(
    "mv_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

projects = Table(
    "mv_projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
)

models = Table(
    "mv_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("mv_projects.id"), nullable=False),
    Column("name", String(64), nullable=False),
    # Bumped with UPDATE ... RETURNING inside the registering transaction: the row lock it
    # takes makes numbers gap-free under concurrent writers on every backend.
    Column("latest_number", Integer, nullable=False, server_default=text("0")),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_models_project_name"),
)

versions = Table(
    "mv_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("mv_models.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("label", String(128)),
    Column("kind", String(16), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("artifact_digest", DIGEST, nullable=False),
    Column("size", BigInteger, nullable=False),  # PostgreSQL's INTEGER stops at 2 GiB
    Column("file_count", Integer, nullable=False),
    # The immutable record (params, metrics, tags, datasets, code, environment ...) as
    # canonical JSON; its digest is the version's digest.
    Column("record", Text, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
    UniqueConstraint("model_id", "label", name="uq_versions_model_label"),
)
Index("ix_versions_digest", versions.c.digest)
Index("ix_versions_artifact", versions.c.artifact_digest)

# Search rows derived from the record, written in the same transaction. A search reads a
# version's rows by primary key (version_id, key); the (key, value) indexes let PostgreSQL's
# planner start from the matching rows instead (a semi-join: a selective search over 100,000
# versions in 0.1 ms, not a scan). SQLite's never does (its plans for every search probe the
# primary key), so there they are not built: they were 45 of a registration's ≈ 105 written
# pages (docs/search.md).
version_params = Table(
    "mv_version_params",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value_text", Text),
    Column("value_num", Float),
)
postgresql_only(Index("ix_params_key_num", version_params.c.key, version_params.c.value_num))
postgresql_only(Index("ix_params_key_text", version_params.c.key, version_params.c.value_text))

version_metrics = Table(
    "mv_version_metrics",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Float, nullable=False),
)
postgresql_only(Index("ix_metrics_key_value", version_metrics.c.key, version_metrics.c.value))

version_tags = Table(
    "mv_version_tags",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)
postgresql_only(Index("ix_tags_key_value", version_tags.c.key, version_tags.c.value))

version_parents = Table(
    "mv_version_parents",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("parent_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("relation", String(16), primary_key=True),
)
Index("ix_parents_parent", version_parents.c.parent_id)

# Every blob a version needs (files, manifest, environment, code diff): the roots for
# integrity checks and, later, garbage collection.
version_blobs = Table(
    "mv_version_blobs",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("role", String(16), nullable=False),
)
Index("ix_version_blobs_digest", version_blobs.c.digest)

stage_intervals = Table(
    "mv_stage_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("mv_models.id"), nullable=False),
    Column("version_id", Integer, ForeignKey("mv_versions.id"), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("valid_from", TS, nullable=False),
    Column("valid_to", TS),
    Column("set_by", String(256), nullable=False),
    Column("reason", Text),
    Column("ended_by", String(256)),
    Column("end_reason", String(16)),
    Column("audit_seq", Integer, nullable=False),
)
Index("ix_stage_version", stage_intervals.c.version_id, stage_intervals.c.valid_to)
Index("ix_stage_model_stage", stage_intervals.c.model_id, stage_intervals.c.stage)
# The database itself refuses a second open production interval per model, and a second
# open interval per version.
partial(
    Index(
        "uq_stage_one_production",
        stage_intervals.c.model_id,
        unique=True,
    ),
    "stage = 'production' AND valid_to IS NULL",
)
partial(
    Index(
        "uq_stage_one_open_per_version",
        stage_intervals.c.version_id,
        unique=True,
    ),
    "valid_to IS NULL",
)

alias_intervals = Table(
    "mv_alias_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("mv_models.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("version_id", Integer, ForeignKey("mv_versions.id"), nullable=False),
    Column("valid_from", TS, nullable=False),
    Column("valid_to", TS),
    Column("set_by", String(256), nullable=False),
    Column("removed_by", String(256)),
    Column("audit_seq", Integer, nullable=False),
)
Index("ix_alias_model_name", alias_intervals.c.model_id, alias_intervals.c.name)
Index("ix_alias_version", alias_intervals.c.version_id)
partial(
    Index(
        "uq_alias_open",
        alias_intervals.c.model_id,
        alias_intervals.c.name,
        unique=True,
    ),
    "valid_to IS NULL",
)

approvals = Table(
    "mv_approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("mv_versions.id"), nullable=False),
    Column("approver", String(256), nullable=False),
    Column("comment", Text),
    Column("created_at", TS, nullable=False),
    Column("audit_seq", Integer, nullable=False),
    UniqueConstraint("version_id", "approver", name="uq_approvals_version_approver"),
)

audit_events = Table(
    "mv_audit_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", TS, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("project", String(64)),
    Column("model", String(64)),
    Column("subject", String(300), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("reason", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # eventhash.CLEAR (1): `actor` is the actor, hashed in clear; eventhash.COMMITTED (2):
    # `actor` is empty and the hash covers `actor_commitment` = SHA-256(salt ‖ actor), the
    # clear actor and salt being in mv_audit_personal
    Column("scheme", Integer, nullable=False, server_default=text("1")),
    Column("actor_commitment", String(64)),
)
Index("ix_audit_model", audit_events.c.project, audit_events.c.model, audit_events.c.seq)
Index("ix_audit_actor", audit_events.c.actor, audit_events.c.seq)
Index("ix_audit_action", audit_events.c.action, audit_events.c.seq)
Index("ix_audit_ts", audit_events.c.ts)

# The clear actor of each scheme-2 event and the salt of its commitment: personal data, kept
# apart so that `audit erase` can delete it without touching a hashed field.
audit_personal = Table(
    "mv_audit_personal",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("actor", String(256), nullable=False),
    Column("salt", String(32), nullable=False),
)
Index("ix_audit_personal_actor", audit_personal.c.actor, audit_personal.c.seq)

# One row: the head of the chain. Writers lock it first, which orders every transaction that
# appends an event; a truncated log disagrees with it.
audit_head = Table(
    "mv_audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Merkle tree nodes over the audit events (level 0 = leaves; only perfect subtrees are
# stored) and the signed checkpoints of the tree (docs/audit.md).
audit_tree = Table(
    "mv_audit_tree",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
)

audit_checkpoints = Table(
    "mv_audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", String(64), nullable=False),
    Column("ts", TS, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", String(100), nullable=False),
)

# A version whose artifact was deleted (its record and history stay), and legal holds that
# forbid deleting one (docs/gc.md).
artifact_deletions = Table(
    "mv_artifact_deletions",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("deleted_by", String(256), nullable=False),
    Column("deleted_at", TS, nullable=False),
    Column("reason", Text, nullable=False),
)

holds = Table(
    "mv_holds",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
)

# A version whose artifact blobs moved to the cold tier (docs/gc.md); restoring one removes
# its row. Garbage collection does not count its artifact as hot.
archives = Table(
    "mv_archives",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("location", Text, nullable=False),
    Column("blobs", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("archived_by", String(256), nullable=False),
    Column("archived_at", TS, nullable=False),
    Column("reason", Text, nullable=False),
)

# -- identity (server mode: docs/server.md) ------------------------------------------------

users = Table(
    "mv_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("disabled_at", TS),
)

# API tokens: only the SHA-256 of the secret part is kept; the token id is looked up on every
# request, so it is unique (and so indexed).
tokens = Table(
    "mv_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_id", String(32), nullable=False, unique=True),
    Column("user", String(256), ForeignKey("mv_users.name"), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("project", String(64)),
    Column("description", Text, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),
    Column("revoked_at", TS),
    Column("revoked_by", String(256)),
)
Index("ix_tokens_user", tokens.c.user)

# Roles per project; the project is named, not referenced, so access can be granted before
# the project's first registration creates it.
members = Table(
    "mv_members",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(64), nullable=False),
    Column("user", String(256), ForeignKey("mv_users.name"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("project", "user", "role", name="uq_members_project_user_role"),
)
Index("ix_members_user", members.c.user)

# -- experiment tracking ------------------------------------------------------------------

experiments = Table(
    "mv_experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("mv_projects.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_experiments_project_name"),
)

runs = Table(
    "mv_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("mv_experiments.id"), nullable=False),
    Column("parent_id", String(32), ForeignKey("mv_runs.id")),
    Column("name", String(128)),
    Column("status", String(16), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("ended_at", TS),
    Column("created_by", String(256), nullable=False),
    Column("failure", Text),
    # What was captured at start (code, environment, command line, host, seeds): canonical
    # JSON, written once.
    Column("record", Text, nullable=False),
)
Index("ix_runs_experiment", runs.c.experiment_id, runs.c.started_at)
Index("ix_runs_parent", runs.c.parent_id)

run_params = Table(
    "mv_run_params",
    metadata,
    Column("run_id", String(32), ForeignKey("mv_runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    # canonical JSON of the value, so 1, 1.0, "1" and true stay distinct
    Column("value", Text, nullable=False),
)

run_tags = Table(
    "mv_run_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("mv_runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

run_metrics = Table(
    "mv_run_metrics",
    metadata,
    # BIGINT on PostgreSQL (billions of points); SQLite needs INTEGER for its rowid alias
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(32), ForeignKey("mv_runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", Integer, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    # NaN and infinities are kept: SQLite would store NaN as NULL, so non-finite values are
    # written as NULL plus their name in ``special``.
    Column("value", Float),
    Column("special", String(4)),
)
Index("ix_run_metrics_run_key_step", run_metrics.c.run_id, run_metrics.c.key, run_metrics.c.step)

run_artifacts = Table(
    "mv_run_artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("mv_runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("digest", DIGEST, nullable=False),
    Column("size", BigInteger, nullable=False),
)
Index("ix_run_artifacts_digest", run_artifacts.c.digest)

snapshots = Table(
    "mv_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("mv_projects.id"), nullable=False),
    Column("name", String(250), nullable=False),
    Column("system", String(16), nullable=False),
    # modelvault snapshots: the manifest digest; external ones: their pinned identity
    Column("digest", String(200), nullable=False),
    Column("uri", Text),
    Column("file_count", Integer),
    Column("size", BigInteger),
    Column("stored", Integer, nullable=False, server_default=text("0")),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("audit_seq", Integer, nullable=False),
    UniqueConstraint("project_id", "name", "digest", name="uq_snapshots_name_digest"),
)
Index("ix_snapshots_digest", snapshots.c.digest)

run_inputs = Table(
    "mv_run_inputs",
    metadata,
    Column("run_id", String(32), ForeignKey("mv_runs.id"), primary_key=True),
    Column("snapshot_id", Integer, ForeignKey("mv_snapshots.id"), primary_key=True),
    Column("role", String(32), primary_key=True),
)
Index("ix_run_inputs_snapshot", run_inputs.c.snapshot_id)

eval_reports = Table(
    "mv_eval_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("mv_versions.id"), nullable=False),
    Column("eval_set", String(200), nullable=False),
    Column("eval_set_name", String(250)),
    Column("digest", DIGEST, nullable=False),
    # the immutable report (metrics, latency, cost, outputs blob) as canonical JSON
    Column("record", Text, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("audit_seq", Integer, nullable=False),
)
Index("ix_eval_reports_version_set", eval_reports.c.version_id, eval_reports.c.eval_set)
Index("ix_eval_reports_set", eval_reports.c.eval_set)

# The run a version was registered from (lineage, and "which versions came from this run").
version_runs = Table(
    "mv_version_runs",
    metadata,
    Column("version_id", Integer, ForeignKey("mv_versions.id"), primary_key=True),
    Column("run_id", String(32), ForeignKey("mv_runs.id"), nullable=False),
)
Index("ix_version_runs_run", version_runs.c.run_id)

# -- durable events -----------------------------------------------------------------------

# A webhook's outbox is the audit log itself: events are append-only with gap-free sequence
# numbers, so a cursor per webhook (the last sequence delivered or dead-lettered) is all the
# state delivery needs, and a restart loses nothing.
webhooks = Table(
    "mv_webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("mv_projects.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("url", Text, nullable=False),
    # needed in clear to sign each delivery (HMAC), unlike API tokens which are hashed
    Column("secret", String(128), nullable=False),
    Column("actions", Text, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("timeout_ms", Integer, nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TS),
    Column("last_error", Text),
    Column("lease_until", TS),
    Column("lease_owner", String(64)),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_webhooks_project_name"),
)

webhook_dead_letters = Table(
    "mv_webhook_dead_letters",
    metadata,
    Column("webhook_id", Integer, ForeignKey("mv_webhooks.id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("dead_at", TS, nullable=False),
)

# -- deployments --------------------------------------------------------------------------

# Environments beyond the built-in development, staging and production.
environments = Table(
    "mv_environments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("mv_projects.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("audit_seq", Integer, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_environments_project_name"),
)

deployments = Table(
    "mv_deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("mv_projects.id"), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("model_id", Integer, ForeignKey("mv_models.id"), nullable=False),
    # hashed with each sticky key: fixed for the deployment's life, so users keep their arm
    Column("salt", String(32), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("project_id", "environment", "model_id", name="uq_deployments_env_model"),
)

# The desired state of a deployment over time: a change closes one interval and opens the
# next, so "what ran where at T" is the interval containing T.
deployment_states = Table(
    "mv_deployment_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", Integer, ForeignKey("mv_deployments.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("spec", Text, nullable=False),
    Column("valid_from", TS, nullable=False),
    Column("valid_to", TS),
    Column("set_by", String(256), nullable=False),
    Column("reason", Text),
    Column("audit_seq", Integer, nullable=False),
    UniqueConstraint("deployment_id", "revision", name="uq_deployment_states_revision"),
)
Index(
    "ix_deployment_states_from", deployment_states.c.deployment_id, deployment_states.c.valid_from
)
partial(
    Index(
        "uq_deployment_states_open",
        deployment_states.c.deployment_id,
        unique=True,
    ),
    "valid_to IS NULL",
)

# Measurements flushed by gateways (one row per replica, release and flush period): the
# control plane sums them over a guardrail's window. Observations, not state: no audit event.
deployment_windows = Table(
    "mv_deployment_windows",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("deployment_id", Integer, ForeignKey("mv_deployments.id"), nullable=False),
    Column("release", String(300), nullable=False),
    Column("role", String(8), nullable=False),
    Column("replica", String(64), nullable=False),
    Column("window_from", TS, nullable=False),
    Column("window_to", TS, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("client_errors", Integer, nullable=False),
    # latency histogram: counts per bucket of gateway.measure.LATENCY_BOUNDS_MS, as JSON
    Column("latency", Text, nullable=False),
    Column("shadow_compared", Integer, nullable=False),
    Column("shadow_agreed", Integer, nullable=False),
    Column("shadow_abs_diff_sum", Float, nullable=False),
    Column("shadow_abs_diff_max", Float, nullable=False),
    Column("shadow_errors", Integer, nullable=False),
    # delayed feedback (POST /v1/feedback) on what this release served
    Column("feedback_rows", Integer, nullable=False, server_default=text("0")),
    Column("feedback_correct", Integer, nullable=False, server_default=text("0")),
    Column("feedback_scored", Integer, nullable=False, server_default=text("0")),
    Column("feedback_abs_err_sum", Float, nullable=False, server_default=text("0")),
)
Index(
    "ix_deployment_windows_to", deployment_windows.c.deployment_id, deployment_windows.c.window_to
)

# Who has shown the server a blob's bytes (an upload through the API): a version may name a
# blob only when its registrant can read a version naming it or has sent its bytes, so a
# digest learned elsewhere is no key to another tenant's files (docs/server.md).
blob_uploads = Table(
    "mv_blob_uploads",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("user", String(256), primary_key=True),
    Column("uploaded_at", TS, nullable=False),
)

# Small files of a registration, local or sent to a server (MODELVAULT_INLINE_BLOB_MAX),
# written in the version's own transaction instead of as files or objects (service/inlineblobs.py).
inline_blobs = Table(
    "mv_inline_blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("stored_at", TS, nullable=False),
)
