"""Every setting modelvault reads, declared once: name, default, environment variable, help.

Nothing else in the package reads ``os.environ``; a test keeps docs/configuration.md in step
with this table.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("home", "MODELVAULT_HOME", "~/.modelvault", "Directory holding the embedded store."),
    Setting(
        "db",
        "MODELVAULT_DB",
        "sqlite:///$MODELVAULT_HOME/registry.db",
        "Metadata store URL (sqlite:///PATH, postgresql://USER@HOST/DB).",
    ),
    Setting(
        "blobs",
        "MODELVAULT_BLOBS",
        "file://$MODELVAULT_HOME/blobs",
        "Blob store URL (file:///PATH, s3://BUCKET/PREFIX, memory://).",
    ),
    Setting("actor", "MODELVAULT_ACTOR", "the OS user", "Who is acting, as written in the audit."),
    Setting("project", "MODELVAULT_PROJECT", "default", "Project used when a reference has none."),
    Setting(
        "policy",
        "MODELVAULT_POLICY",
        "$MODELVAULT_HOME/policy.toml",
        "Promotion policy file (docs/policy.md).",
    ),
    Setting(
        "sqlite_synchronous",
        "MODELVAULT_SQLITE_SYNCHRONOUS",
        "FULL",
        "SQLite synchronous pragma: FULL (durable on power loss) or NORMAL (faster).",
    ),
    Setting(
        "sqlite_busy_ms",
        "MODELVAULT_SQLITE_BUSY_MS",
        "60000",
        "How long a writer waits for another writer's lock before failing, in ms.",
    ),
    Setting(
        "pg_lock_timeout_ms",
        "MODELVAULT_PG_LOCK_TIMEOUT_MS",
        "60000",
        "PostgreSQL: how long a writer waits for another writer's lock before failing, in ms.",
    ),
    Setting(
        "inline_blob_max",
        "MODELVAULT_INLINE_BLOB_MAX",
        "64KiB",
        "A registered file (and a manifest) up to this size is kept in the metadata store, "
        "committed with its version, instead of as a blob file or object (0: never); at most "
        "4 MiB of them per registration. Applies to local registrations and to those a server "
        "receives.",
    ),
    Setting(
        "s3_endpoint_url",
        "MODELVAULT_S3_ENDPOINT_URL",
        "boto3's (AWS)",
        "Endpoint of an S3-compatible store (MinIO, Ceph, R2...), e.g. https://minio:9000.",
    ),
    Setting("s3_region", "MODELVAULT_S3_REGION", "boto3's", "Region of the S3 bucket."),
    Setting(
        "s3_multipart_threshold",
        "MODELVAULT_S3_MULTIPART_THRESHOLD",
        "64MiB",
        "Files larger than this go to S3 by multipart upload (bytes, or KiB/MiB/GiB).",
    ),
    Setting(
        "s3_part_size",
        "MODELVAULT_S3_PART_SIZE",
        "16MiB",
        "Size of each multipart upload part, at least 5MiB (grown to stay under 10000 parts).",
    ),
    Setting(
        "s3_timeout",
        "MODELVAULT_S3_TIMEOUT",
        "60",
        "Seconds to wait for an S3 connection or for the next bytes of a response.",
    ),
    Setting(
        "s3_max_attempts",
        "MODELVAULT_S3_MAX_ATTEMPTS",
        "5",
        "Attempts per S3 request (errors 5xx, throttling, timeouts) before failing.",
    ),
    Setting(
        "audit_key",
        "MODELVAULT_AUDIT_KEY",
        "$MODELVAULT_HOME/keys/audit-ed25519.pem",
        "Ed25519 key signing audit checkpoints; keep it outside the database (made on first use).",
    ),
    Setting(
        "audit_witness",
        "MODELVAULT_AUDIT_WITNESS",
        "$MODELVAULT_HOME/witness",
        "Directory or s3://BUCKET/PREFIX where every checkpoint is also written once (S3 "
        "Object Lock when the bucket has it); `off` disables the witness.",
    ),
    Setting(
        "retention",
        "MODELVAULT_RETENTION",
        "$MODELVAULT_HOME/retention.toml",
        "Retention policy file read by `retention apply` (docs/gc.md).",
    ),
    Setting(
        "cold_blobs",
        "MODELVAULT_COLD_BLOBS",
        "none",
        "Cold tier blob store URL (file:///PATH, s3://BUCKET/PREFIX) that `retention apply` "
        "archives to (docs/gc.md).",
    ),
    Setting(
        "checkpoint_every",
        "MODELVAULT_CHECKPOINT_EVERY",
        "1000",
        "Sign a checkpoint after this many new audit events (0: only on demand).",
    ),
    Setting(
        "checkpoint_seconds",
        "MODELVAULT_CHECKPOINT_SECONDS",
        "3600",
        "Sign a checkpoint when the newest is older than this and events were added (0: never).",
    ),
    Setting(
        "oidc_issuer",
        "MODELVAULT_OIDC_ISSUER",
        "none (OIDC off)",
        "Server: accept bearer JWTs from this OIDC issuer (its `iss`), beside API tokens.",
    ),
    Setting(
        "oidc_audience",
        "MODELVAULT_OIDC_AUDIENCE",
        "none",
        "Server: the `aud` a JWT must carry; required when MODELVAULT_OIDC_ISSUER is set.",
    ),
    Setting(
        "oidc_jwks_url",
        "MODELVAULT_OIDC_JWKS_URL",
        "the issuer's discovery document",
        "Server: where the issuer's signing keys (JWKS) are; default from ISSUER/.well-known/.",
    ),
    Setting(
        "url",
        "MODELVAULT_URL",
        "unset (local mode)",
        "Client: a server's URL (http://host:7310); the SDK and CLI then act through it.",
    ),
    Setting(
        "token",
        "MODELVAULT_TOKEN",
        "unset",
        "Client: the API token sent to the server at MODELVAULT_URL.",
    ),
)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db: str
    blobs: str
    actor: str
    project: str
    policy: Path
    sqlite_synchronous: str = "FULL"
    sqlite_busy_ms: str = "60000"
    pg_lock_timeout_ms: str = "60000"
    inline_blob_max: str = "64KiB"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_multipart_threshold: str = "64MiB"
    s3_part_size: str = "16MiB"
    s3_timeout: str = "60"
    s3_max_attempts: str = "5"
    audit_key: str = ""
    audit_witness: str = ""
    retention: str = ""
    cold_blobs: str = ""
    checkpoint_every: str = "1000"
    checkpoint_seconds: str = "3600"
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    url: str = ""
    token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | Path) -> Settings:
        source = os.environ if env is None else env
        home = Path(str(overrides.get("home") or source.get("MODELVAULT_HOME") or "~/.modelvault"))
        home = home.expanduser().absolute()
        settings = cls(
            home=home,
            db=source.get("MODELVAULT_DB") or f"sqlite:///{home / 'registry.db'}",
            blobs=source.get("MODELVAULT_BLOBS") or f"file://{home / 'blobs'}",
            actor=source.get("MODELVAULT_ACTOR") or _os_user(),
            project=source.get("MODELVAULT_PROJECT") or "default",
            policy=Path(source.get("MODELVAULT_POLICY") or home / "policy.toml"),
            sqlite_synchronous=(source.get("MODELVAULT_SQLITE_SYNCHRONOUS") or "FULL").upper(),
            sqlite_busy_ms=source.get("MODELVAULT_SQLITE_BUSY_MS") or "60000",
            pg_lock_timeout_ms=source.get("MODELVAULT_PG_LOCK_TIMEOUT_MS") or "60000",
            inline_blob_max=source.get("MODELVAULT_INLINE_BLOB_MAX") or "64KiB",
            s3_endpoint_url=source.get("MODELVAULT_S3_ENDPOINT_URL") or "",
            s3_region=source.get("MODELVAULT_S3_REGION") or "",
            s3_multipart_threshold=source.get("MODELVAULT_S3_MULTIPART_THRESHOLD") or "64MiB",
            s3_part_size=source.get("MODELVAULT_S3_PART_SIZE") or "16MiB",
            s3_timeout=source.get("MODELVAULT_S3_TIMEOUT") or "60",
            s3_max_attempts=source.get("MODELVAULT_S3_MAX_ATTEMPTS") or "5",
            audit_key=source.get("MODELVAULT_AUDIT_KEY")
            or str(home / "keys" / "audit-ed25519.pem"),
            audit_witness=source.get("MODELVAULT_AUDIT_WITNESS") or str(home / "witness"),
            retention=source.get("MODELVAULT_RETENTION") or str(home / "retention.toml"),
            cold_blobs=source.get("MODELVAULT_COLD_BLOBS") or "",
            checkpoint_every=source.get("MODELVAULT_CHECKPOINT_EVERY") or "1000",
            checkpoint_seconds=source.get("MODELVAULT_CHECKPOINT_SECONDS") or "3600",
            oidc_issuer=source.get("MODELVAULT_OIDC_ISSUER") or "",
            oidc_audience=source.get("MODELVAULT_OIDC_AUDIENCE") or "",
            oidc_jwks_url=source.get("MODELVAULT_OIDC_JWKS_URL") or "",
            url=source.get("MODELVAULT_URL") or "",
            token=source.get("MODELVAULT_TOKEN") or "",
        )
        rest = {k: v for k, v in overrides.items() if k != "home" and v is not None}
        return replace(settings, **rest) if rest else settings  # type: ignore[arg-type]
